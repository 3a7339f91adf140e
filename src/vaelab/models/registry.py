"""The model registry: one table that the CLI, the trainer and `vaelab.load` share (no if-chains).

A spec names how to build the model, the objective it trains with (and which others it accepts), the config
values it brings along (`defaults`: `vaelab train --model NAME` starts from them, the user's file and flags
go on top; `model_config(name)` does the same in Python), whether it needs labels, and a check of settings
that do not fit it, run before any data is read. Models written outside vaelab join the same table through
`register_model(name, build, ...)` (docs/extending.md); a name is registered once.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from vaelab.baselines import GAN, PixelCNN
from vaelab.baselines.pixelcnn import DEFAULTS as PIXELCNN_EXTRA
from vaelab.config import Config, ModelConfig, ObjectiveConfig
from vaelab.distributions.mixed import MixedLikelihood
from vaelab.errors import ConfigError
from vaelab.models.adgm import ADGM, ADGM_EXTRA, check_adgm
from vaelab.models.autoencoder import Autoencoder
from vaelab.models.cvae import CVAE
from vaelab.models.hierarchical import HierarchicalVAE
from vaelab.models.linear import LinearGaussianVAE
from vaelab.models.stacked import M1M2_DEFAULTS, build_m2, check_m2
from vaelab.models.vae import VAE
from vaelab.models.vampprior import VampPriorVAE
from vaelab.objectives.wake_sleep import ELBO_KNOBS
from vaelab.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model, its training objective (and the others it accepts), its own config defaults,
    whether it needs labels, and a check of config values that do not fit it.

    Args:
        build: `(ModelConfig, (C, H, W)) -> nn.Module` (a model class works).
        objective: the objective it trains with when objective.name is "default".
        description: one line for `vaelab train --help`.
        needs_labels: training needs every image's label (or some, for m2).
        objectives: other objectives it accepts (`--objective NAME`).
        defaults: config values it brings along, by dotted key.
        check: refuses config values that do not fit it (ConfigError), before data is read.
        extra_keys: the model.extra settings it reads; any other key is refused as a typo.
        flows: it takes a flow posterior (model.posterior, `vaelab.distributions.flows`); else only gaussian.
        features: it reads model.features (--features RUN, M1+M2's codes of a trained run); else it is refused.
    """

    build: Callable[[ModelConfig, tuple[int, int, int]], nn.Module]
    objective: str
    description: str
    needs_labels: bool = False
    objectives: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[Config], None] | None = None
    extra_keys: tuple[str, ...] = ()  # the model.extra settings it reads; any other key is a typo
    flows: bool = False  # takes model.posterior planar:K, iaf:K, sylvester:K (a flow q(z|x)); else gaussian
    features: bool = False  # reads model.features (an M1 run); set elsewhere, the flag would be ignored


def _no_analytic_kl(why: str) -> Callable[[Config], None]:
    def check(cfg: Config) -> None:
        if objective_name(cfg) == "elbo" and cfg.objective.kl == "analytic":
            raise ConfigError(f"{why}: KL(q || p) has no closed form; use objective.kl=mc (--kl mc)")

    return check


def semi_supervised_models() -> str:
    """The registered models that learn from a few labels (their defaults set data.labelled), comma-separated."""
    return ", ".join(n for n, spec in MODELS.items() if spec.defaults.get("data.labelled", 0) > 0)


def _fully_labelled(cfg: Config) -> None:
    if cfg.data.labelled > 0:
        raise ConfigError(
            f"model '{cfg.model.name}' conditions on every image's label; data.labelled (keeping only some "
            f"labels) is for the semi-supervised models {semi_supervised_models()}"
        )


def _unused_objective_settings(names: tuple[str, ...], why: str) -> Callable[[Config], None]:
    """A check refusing objective settings, changed from their defaults, that the model would ignore."""

    def check(cfg: Config) -> None:
        o, d = asdict(cfg.objective), asdict(ObjectiveConfig())
        changed = [f"objective.{n}" for n in names if o[n] != d[n]]
        if changed:
            raise ConfigError(f"model '{cfg.model.name}' {why}: {', '.join(changed)} do not apply to it")

    return check


def _all(*checks: Callable[[Config], None]) -> Callable[[Config], None]:
    def check(cfg: Config) -> None:
        for c in checks:
            c(cfg)

    return check


# PixelCNN and the GAN have no q(z|x) and no KL term: the VAE objective's knobs would be ignored.
_NO_LATENT = _unused_objective_settings(
    ("beta", "warmup_epochs", "kl_cycle_epochs", "free_bits", "noise", "dreg", "num_samples"),
    "has no encoder and no KL term",
)


def _binary_bernoulli(cfg: Config) -> None:
    if cfg.model.likelihood != "bernoulli" or cfg.data.binarize == "none":
        raise ConfigError(
            "pixelcnn models binary pixels with Bernoulli conditionals: it needs model.likelihood=bernoulli and "
            f"--binarize dynamic or static (got likelihood '{cfg.model.likelihood}', binarize '{cfg.data.binarize}')"
        )


IWAE_NOTE = (
    "IWAE_K bound of Burda et al. 2016 on the VAE; K = objective.num_samples, DReG: objective.dreg=true"
)

# The Helmholtz-machine objectives (vaelab.objectives.wake_sleep, .mcem): a one-latent-layer, unlabelled model.
WAKE_SLEEP_MCEM = ("wake-sleep", "reweighted-wake-sleep", "mcem")


def _no_elbo_knobs(cfg: Config) -> None:
    """Wake-sleep and MCEM have no KL weight, free bits or input noise: refuse them before any data is read."""
    name = objective_name(cfg)
    if name in WAKE_SLEEP_MCEM:
        o, d = asdict(cfg.objective), asdict(ObjectiveConfig())
        changed = [f"objective.{n}" for n in ELBO_KNOBS if o[n] != d[n]]
        if changed:
            raise ConfigError(
                f"objective {name} has no KL weight, free bits or input noise: {', '.join(changed)} do not apply"
            )


MODELS: Registry[ModelSpec] = Registry(
    "model",
    {
        "vae": ModelSpec(
            VAE,
            "elbo",
            "VAE: Gaussian encoder, N(0, I) prior, chosen likelihood (Kingma & Welling 2014); beta-VAE: --beta 4",
            objectives=("iwae", *WAKE_SLEEP_MCEM),
            check=_no_elbo_knobs,
            flows=True,
        ),
        "autoencoder": ModelSpec(
            Autoencoder,
            "reconstruction",
            "deterministic autoencoder, the non-generative baseline",
            # its loss is the reconstruction alone (of a noised input when denoising): the KL's knobs are unused
            check=_unused_objective_settings(
                ("beta", "warmup_epochs", "kl_cycle_epochs", "free_bits", "dreg", "num_samples"),
                "has no KL term",
            ),
        ),
        "linear-gaussian": ModelSpec(
            LinearGaussianVAE,
            "elbo",
            "probabilistic PCA with a linear encoder: log p(x) exact (for checking bounds)",
            objectives=("iwae", *WAKE_SLEEP_MCEM),
            check=_no_elbo_knobs,
        ),
        "iwae": ModelSpec(
            VAE, "iwae", IWAE_NOTE, objectives=("elbo",), defaults={"objective.num_samples": 5}, flows=True
        ),
        "hierarchical": ModelSpec(
            HierarchicalVAE,
            "elbo",
            "two stochastic layers, 784-200-200-100 / 100-100-50 tanh (Burda et al. 2016); --objective iwae",
            objectives=("iwae",),
            defaults={
                "model.hidden": (200, 200),
                "model.activation": "tanh",
                "model.latent_dim": 50,
                "objective.kl": "mc",
            },
            check=_no_analytic_kl("the hierarchical VAE's q and p are not one Gaussian layer"),
            extra_keys=("h1_dim", "h2_hidden", "prior", "pseudo_inputs"),
            flows=True,
        ),
        "vampprior": ModelSpec(
            VampPriorVAE,
            "elbo",
            "VAE with the VampPrior: a mixture of q(z|u_k) over 500 learned pseudo-inputs (Tomczak & Welling 2018)",
            objectives=("iwae",),
            defaults={"objective.kl": "mc"},
            check=_no_analytic_kl("the VampPrior is a mixture"),
            extra_keys=("pseudo_inputs",),
            flows=True,
        ),
        "cvae": ModelSpec(
            CVAE,
            "elbo",
            "conditional VAE: q(z|x,y), p(x|z,y), p(z) = N(0, I); needs labels (Sohn et al. 2015)",
            needs_labels=True,
            objectives=("iwae",),
            # A small z leaves the class to y and keeps the style in z (docs/benchmarks.md, notes from the code).
            defaults={"model.latent_dim": 2},
            check=_fully_labelled,
            extra_keys=("classes",),
        ),
        "m2": ModelSpec(
            build_m2,
            "m2",
            "semi-supervised M2 (Kingma et al. 2014), 100 labels by default; reports test classification error",
            needs_labels=True,
            defaults={
                "model.hidden": (500,),
                "model.activation": "softplus",
                "model.latent_dim": 50,
                "data.labelled": 100,
                # M1+M2 (--features) only: M2 on M1's active units with a full covariance per class (issue #19)
                "model.extra": dict(M1M2_DEFAULTS),
            },
            check=_all(
                _unused_objective_settings(("noise", "free_bits"), "trains with its own objective"),
                check_m2,
            ),
            extra_keys=("classes", "alpha", "active_sd", "code_cov", "classify", "code_components"),
            features=True,
        ),
        "adgm": ModelSpec(
            ADGM,
            "m2",
            "auxiliary deep generative model (Maaloe et al. 2016): M2 with an auxiliary a, q(y|a,x); 100 labels",
            needs_labels=True,
            # the paper's MNIST settings (and its authors' code): 2x500 ReLU, a and z of 100 dimensions
            # (model.extra.aux_dim: 100 by default), Adam 3e-4 decayed x0.75 every 200 epochs, batches of 100
            defaults={
                "model.hidden": (500, 500),
                "model.activation": "relu",
                "model.latent_dim": 100,
                "data.labelled": 100,
                "train.lr": 3e-4,
                "train.batch_size": 100,
                "train.lr_schedule": "step",
                "train.lr_step_epochs": 200,
                "train.lr_gamma": 0.75,
            },
            check=_all(
                _unused_objective_settings(("noise", "free_bits"), "trains with its own objective"),
                check_adgm,
            ),
            extra_keys=ADGM_EXTRA,
        ),
        "pixelcnn": ModelSpec(
            PixelCNN,
            "exact-nll",
            "PixelCNN (van den Oord et al. 2016): masked convolutions, exact log p(x) by the chain rule, binary pixels",
            check=_all(_NO_LATENT, _binary_bernoulli),
            extra_keys=tuple(PIXELCNN_EXTRA),
        ),
        "gan": ModelSpec(
            GAN,
            "gan",
            "GAN, non-saturating loss (DCGAN body): no likelihood; eval by AIS under N(G(z), sigma^2 I) (Wu et al. 2017)",
            defaults={
                "model.body": "conv",
                "model.latent_dim": 64,
                "model.likelihood": "gaussian",
                "train.lr": 2e-4,
                "train.batch_size": 64,
            },
            check=_NO_LATENT,
        ),
    },
)


# Where each model registered outside this file came from (a module name, or a plugin file's path): a run of
# it names that source when it is opened without it (vaelab.plugins, vaelab.train.checkpoint).
SOURCES: dict[str, str] = {}


def register_model(
    name: str,
    build: ModelSpec | Callable[[ModelConfig, tuple[int, int, int]], nn.Module],
    objective: str = "elbo",
    description: str = "",
    *,
    replace: bool = False,
    **more: Any,
) -> ModelSpec:
    """Add a model to the registry, so `vaelab train --model NAME`, `vaelab.train` and every command know it.

    Args:
        name: the name users choose it by (`--model NAME`, `model.name`); registering a taken name is refused.
        build: `(ModelConfig, (C, H, W)) -> nn.Module`, e.g. the model class itself; or a whole `ModelSpec`
            (then give none of the other fields).
        objective: the objective it trains with by default (a key of `vaelab.objectives.OBJECTIVES`).
        description: one line for `vaelab train --help` (default: the first line of `build`'s docstring).
        replace: replace a model already registered under `name` instead of refusing.
        **more: the other `ModelSpec` fields: `objectives` (others it accepts), `defaults` (config values it
            brings, e.g. `{"objective.kl": "mc"}`), `needs_labels`, `check`, `extra_keys`, `flows`, `features`.

    Returns:
        The registered `ModelSpec`.
    """
    if isinstance(build, ModelSpec):
        if more or description or objective != "elbo":
            raise ConfigError(
                f"register_model('{name}', spec): give a ModelSpec or build with its fields, not both"
            )
        spec = build
    else:
        if not callable(build):
            raise ConfigError(
                f"model '{name}': build must be a class or function (ModelConfig, shape) -> nn.Module"
            )
        doc = (build.__doc__ or "").strip()
        spec = ModelSpec(build, objective, description or (doc.splitlines()[0] if doc else name), **more)
    Config().replace(**{"model.name": name, **spec.defaults})  # a typo in a default key fails here, not later
    MODELS.register(name, spec, replace=replace)
    module = inspect.getmodule(spec.build)
    if module is not None and module.__name__ != "__main__" and module.__name__.split(".")[0] != "vaelab":
        SOURCES[name] = module.__name__
    return spec


def get_spec(name: str) -> ModelSpec:
    """The registered spec of `name`; a ConfigError listing the choices if unknown.

    Args:
        name: a model name (`model.name`).
    """
    return MODELS.lookup(name)


# What torch's CPU allocator says when malloc fails (torch.OutOfMemoryError is the CUDA/MPS one).
OUT_OF_MEMORY = ("can't allocate memory", "not enough memory")


def _tried(message: str) -> str:
    """ " (one of its tensors needs 40.0 GB)" from torch's "you tried to allocate N bytes", else ""."""
    found = re.search(r"tried to allocate (\d+) bytes", message)
    return f" (one of its tensors needs {int(found.group(1)) / 1e9:.1f} GB)" if found else ""


def build_model(cfg: ModelConfig, shape: tuple[int, int, int]) -> nn.Module:
    """Build the model `cfg.name` for data of one-datum shape `shape` (C, H, W).

    Args:
        cfg: the model's config; `cfg.name` picks the registry entry.
        shape: one datum's shape (C, H, W).

    Every likelihood option the model needs is in `cfg` (`vaelab.models.vae.likelihood_from`), a table's
    layout too (`cfg.table`): a model given one must have built the likelihood mixed with it.
    """
    spec = get_spec(cfg.name)
    try:
        model = spec.build(cfg, tuple(shape))
    except RuntimeError as e:  # torch.OutOfMemoryError is one too
        if not isinstance(e, torch.OutOfMemoryError) and not any(m in str(e) for m in OUT_OF_MEMORY):
            raise
        raise ConfigError(
            f"model '{cfg.name}' (hidden {list(cfg.hidden)}, latent_dim {cfg.latent_dim}) does not fit in "
            f"memory{_tried(str(e))}: choose smaller sizes (--hidden, --latent-dim)"
        ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model '{cfg.name}': its build returned a {type(model).__name__}, not a torch.nn.Module"
        )
    if cfg.table and not any(isinstance(m, MixedLikelihood) for m in model.modules()):
        raise ConfigError(
            f"model '{cfg.name}' has its own p(x|z), not a likelihood it takes: a table's rows need one that "
            "builds model.likelihood (vae, iwae, vampprior, hierarchical, autoencoder)"
        )
    return model


def objective_name(cfg: Config) -> str:
    """The objective a run trains with: objective.name, or the model's own when that is "default".

    Args:
        cfg: the run's config.
    """
    name = cfg.objective.name
    return get_spec(cfg.model.name).objective if name == "default" else name


def model_config(name: str, base: Config | None = None) -> Config:
    """`base` (default: Config()) with model `name` and that model's own defaults: the Python twin of
    `vaelab train --model NAME`.

    Args:
        name: a registered model name.
        base: the config to start from (default `Config()`).
    """
    spec = get_spec(name)
    return (base if base is not None else Config()).replace(**{"model.name": name, **spec.defaults})
