"""M1+M2 (Kingma, Rezende, Mohamed & Welling 2014, section 3.2): M2 stacked on the codes of a trained VAE, M1.

M1 (any trained one-latent-layer model of unlabelled images: `vaelab train --model vae`) stays frozen; M2 learns
on its codes z1 ~ q(z1|x), a fresh draw at every visit of an image. At test time z1 = the mean of q(z1|x) is
classified by q(y|z1) or by M2's own posterior p(y|z1) (`classify`, below). Settings (model.extra, issue #19,
docs/semi-supervised-notes.md):
- `active_sd`: M2 models only M1's active units, those whose code mean varies with sd > active_sd (0.1 in the
  authors' code), found from images M1 generates; the inactive ones (N(0, 1) noise under q(z1|x) and p(z1)
  alike) keep M1's prior. 0: every unit.
- `code_cov`: p(z1|y,z2) is a Gaussian of diagonal covariance from the decoder (the paper's, "diagonal"), or of a
  learned full covariance per class ("full"): the within-class correlations of M1's codes that a collapsed z2
  cannot give (with "diagonal", M2 ends as a diagonal Gaussian mixture of the codes).
- `classify`: "q" (q(y|z1), the paper's) or "model" (p(y|z1), the default with code_cov "full").
- `code_components`: with code_cov "full", p(z1|y,z2) is a mixture of K full-covariance Gaussians a class,
  N(mu(y, z2) + d_yk, L_yk L_yk^T) with learned weights pi_yk, offsets d_yk and factors L_yk, summed over k
  exactly (so the bounds stay bounds): a digit drawn in several ways is several clusters of codes, which one
  Gaussian a class cannot follow (K = 1, the default, is the form above).
The two models make one generative model p(x|z1) p(z1|y,z2) p(y) p(z2), so the bounds stay bounds on log p(x):
log p(x) >= E_q(z1|x)[log p(x|z1) - log q(z1|x) + U(z1)], with M2's U(z1) <= log p(z1). `class_terms` adds
M1's log p(x|z1) (and the inactive units' log N(z1; 0, I)) to every class's rec and log q(z1|x) to its kl; they
do not depend on M2's weights, so the gradient is M2's own. A run is `vaelab train --model m2 --features
RUN_OF_M1`: `model.features` names M1's run, whose best checkpoint is read when the model is built (and its weights kept in this run's checkpoints).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributions import (
    Categorical,
    Distribution,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    kl_divergence,
)
from torch.nn import functional as F

from vaelab.config import Config, ModelConfig
from vaelab.distributions.gaussian import draw_z
from vaelab.distributions.sampling import rsample
from vaelab.errors import ConfigError
from vaelab.models.cvae import labelled_draws
from vaelab.models.m2 import M2, m2_alpha, setting_number
from vaelab.models.protocol import LabelTerms, capabilities

# Defaults when a config names neither (runs made before issue #19's fix): every unit, diagonal covariance. New
# m2 runs get active_sd 0.1 and code_cov "full" from the model's registered defaults (`vaelab.models.registry`).
ACTIVE_SD = 0.0
CODE_COVARIANCES = ("diagonal", "full")
ACTIVE_PROBES = 1000  # images M1 generates (seeded) to find its active units: no data needed
SOFTPLUS_INV_ONE = 0.5413248546129181  # softplus(x) = 1: the full covariance starts at I
SD_FLOOR = 1e-3  # least diagonal entry of a full covariance's Cholesky factor
# The label weight alpha (vaelab.models.m2) when none is given, with code_cov "full": 1 (validation error, draw 0,
# 6 epochs: 9.4% at 1, 9.3% at 0.3 but rising after epoch 3, 12.9% at M2's default 10; docs/semi-supervised-notes.md).
FULL_ALPHA = 1.0
# The classifier at test time (model.extra.classify): q(y|z1), or M2's own posterior p(y|z1) ("model", the
# default with code_cov "full": 6.5-6.9% validation error at epoch 10 of three draws, q(y|z1) 10.7-10.8%).
CLASSIFIERS = ("q", "model")
# The sd of the components' random starting offsets d_yk (code_components > 1; codes have sd about 1): it
# breaks the symmetry between a class's components.
OFFSET_SD = 0.3


def active_units(m1: nn.Module, threshold: float, probes: int = ACTIVE_PROBES) -> torch.Tensor:
    """bool [D1]: the units whose q(z1|x) mean has sd > threshold over `probes` images M1 generates (the
    means of p(x|z1), z1 ~ p(z1), seed 0); all True when threshold is 0, no unit passes it, or M1's prior is
    not N(0, I) (then an inactive unit's density is not known).

    Args:
        m1: the trained one-latent-layer model.
        threshold: the sd below which a unit counts as inactive.
        probes: how many images to generate.
    """
    dim = int(capabilities(m1).latent_dim)
    prior = m1.prior()
    base = getattr(prior, "base_dist", prior)
    standard = isinstance(base, Normal) and bool((base.loc == 0).all() and (base.scale == 1).all())
    if threshold <= 0 or not standard:  # another prior: an inactive unit's density is not known, keep all
        return torch.ones(dim, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = rsample(prior, (probes,), g)
        keep = m1.encode(m1.decode(z).mean).mean.float().std(0) > threshold
    return keep if keep.any() else torch.ones_like(keep)  # none varies that much (an untrained M1): all


def read_features_run(path: str) -> tuple[dict[str, Any], Config, Path]:
    """(checkpoint, config, file) of the run `model.features` names: its best checkpoint.

    Args:
        path: M1's run folder or checkpoint file.
    """
    from vaelab.errors import CheckpointError
    from vaelab.train.checkpoint import config_of, read_checkpoint, resolve_checkpoint

    try:
        file = resolve_checkpoint(path, "best")
        ck = read_checkpoint(file)
    except CheckpointError as e:
        raise ConfigError(f"model.features: {e}") from None
    return ck, config_of(ck, file), file


def check_features(cfg: Config) -> None:
    """model.features, if set, names a run of an unlabelled one-latent-layer model trained on the same data
    set at the same image size (a ConfigError in one line otherwise), before any data is read.

    Args:
        cfg: the run's config.
    """
    if not cfg.model.features:
        return
    _, m1, file = read_features_run(cfg.model.features)
    ours = (cfg.data.name, cfg.data.image_size, cfg.data.channels)
    theirs = (m1.data.name, m1.data.image_size, m1.data.channels)
    if ours[0] != theirs[0]:
        raise ConfigError(
            f"model.features: {file} was trained on data '{theirs[0]}', this run reads '{ours[0]}': M1's codes "
            "only mean something for the data set it learned"
        )
    if ours[0].startswith("folder:") and ours[1:] != theirs[1:]:
        raise ConfigError(
            f"model.features: {file} was trained at image size {theirs[1]} with {theirs[2]} channel(s), this "
            f"run reads size {ours[1]} with {ours[2]}"
        )


# The model.extra settings only M1+M2 reads (plain M2 would ignore them), and the values m2's registered defaults
# give them (`vaelab.models.registry` reads them from here): those are accepted without --features, any other
# value is refused.
M1M2_ONLY = ("active_sd", "code_cov", "classify", "code_components")
M1M2_DEFAULTS: dict[str, Any] = {"active_sd": 0.1, "code_cov": "full"}


def stacked_settings(cfg: ModelConfig) -> tuple[float, str, str, int]:
    """(active_sd, code_cov, classify, code_components) of M1+M2 from model.extra, each checked: a ConfigError in
    one line naming the key and the value otherwise.

    Args:
        cfg: the model config.
    """
    value = cfg.extra.get("active_sd", ACTIVE_SD)
    threshold = setting_number(value)
    if threshold is None or threshold < 0:
        raise ConfigError(f"model.extra.active_sd must be >= 0 (a number; 0 keeps every unit), got {value!r}")
    code_cov = cfg.extra.get("code_cov", "diagonal")
    if code_cov not in CODE_COVARIANCES:
        raise ConfigError(
            f"model.extra.code_cov must be one of {', '.join(CODE_COVARIANCES)}, got {code_cov!r}"
        )
    full = code_cov == "full"
    classify = cfg.extra.get("classify", "model" if full else "q")
    if classify not in CLASSIFIERS:
        raise ConfigError(f"model.extra.classify must be one of {', '.join(CLASSIFIERS)}, got {classify!r}")
    value = cfg.extra.get("code_components", 1)
    components = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        components = int(value)
    if components is None or components < 1 or (components > 1 and not full):
        raise ConfigError(
            "model.extra.code_components must be >= 1, and above 1 only with code_cov full (an integer), got "
            f"{value!r} with code_cov {code_cov}"
        )
    return threshold, code_cov, classify, components


def check_m2(cfg: Config) -> None:
    """The registry's check of an m2 run's settings, before any data is read: alpha a number >= 0; with
    model.features (M1+M2) the code settings valid (`stacked_settings`) and the features run fit for M1; without,
    no M1+M2-only setting other than its registered default (plain M2 would ignore it).

    Args:
        cfg: the run's config.
    """
    extra = cfg.model.extra
    m2_alpha(cfg.model)
    if not cfg.model.features:
        for key in M1M2_ONLY:
            if key in extra and not _is_default(key, extra[key]):
                raise ConfigError(
                    f"model.extra.{key} applies to M1+M2 (--features RUN) only, got {extra[key]!r}"
                )
        return
    stacked_settings(cfg.model)
    check_features(cfg)


def _is_default(key: str, value: Any) -> bool:
    if key not in M1M2_DEFAULTS:
        return False
    default = M1M2_DEFAULTS[key]
    if isinstance(default, float):
        return setting_number(value) == default
    return value == default


class StackedM2(nn.Module):
    """M1+M2: a frozen M1 encoder/decoder of x and an M2 over its codes z1; bounds on log p(x), q(y|z1)."""

    def __init__(
        self, cfg: ModelConfig, shape: tuple[int, int, int], features: nn.Module | None = None
    ) -> None:
        """M1 from `features` (a trained model, in Python) or else the run `cfg.features` names; M2 from `cfg`."""
        super().__init__()
        if features is None:
            from vaelab.train.checkpoint import model_from_checkpoint

            ck, m1_cfg, file = read_features_run(cfg.features)
            if tuple(ck["shape"]) != tuple(shape):
                raise ConfigError(
                    f"model.features: {file} was trained on images of shape {tuple(ck['shape'])}, this run's "
                    f"are {tuple(shape)}"
                )
            m1, where = model_from_checkpoint(ck, file), f"{file} is a '{m1_cfg.model.name}' model"
        else:
            m1, where = features, f"the features model is a {type(features).__name__}"
        caps = capabilities(m1)
        if not caps.one_latent_layer or caps.labelled or not caps.importance:
            raise ConfigError(
                f"model.features: {where}; M1 must be an unlabelled model with one latent layer (encode, "
                "decode, prior: e.g. vae)"
            )
        self.features = m1.requires_grad_(False).eval()
        self.shape = tuple(shape)
        threshold, self.code_cov, self.classify_with, self.components = stacked_settings(cfg)
        self.register_buffer("active", active_units(m1, threshold), persistent=False)  # M1 and cfg give it
        self.code_dim = int(self.active.sum())
        full = self.code_cov == "full"
        extra = {"alpha": FULL_ALPHA, **cfg.extra} if full else cfg.extra
        head_cfg = dataclasses.replace(
            cfg,
            extra=extra,
            features="",
            likelihood="gaussian",
            gaussian_variance="fixed" if full else "decoder",  # full: the decoder gives the mean only
            gaussian_mean="identity",
        )
        self.head = M2(head_cfg, (1, 1, self.code_dim))
        c, d, k = self.head.num_classes, self.code_dim, self.components
        if full:  # p(z1|y,z2) = N(mu(y, z2), L_y L_y^T): raw Cholesky factors, L_y = I at the start
            self.tril_raw = nn.Parameter(torch.zeros(c, d, d) if k == 1 else torch.zeros(c, k, d, d))
        if k > 1:  # a mixture a class: weights pi_yk (equal at the start) and offsets d_yk from mu(y, z2)
            self.mix_logits = nn.Parameter(torch.zeros(c, k))
            self.offsets = nn.Parameter(OFFSET_SD * torch.randn(c, k, d))
        self.num_classes = self.head.num_classes
        self.latent_dim = self.head.latent_dim
        self.alpha = self.head.alpha
        self.importance_cost = self.head.importance_cost + 1

    def train(self, mode: bool = True) -> StackedM2:
        """Train M2; M1 stays in eval mode (it is frozen)."""
        super().train(mode)
        self.features.eval()
        return self

    def _codes(self, z1: torch.Tensor) -> torch.Tensor:
        """M1's active codes of z1 [..., D1] as M2's data [N, 1, 1, D1 active]."""
        return z1[..., self.active].reshape(-1, 1, 1, self.code_dim)

    def _m1_terms(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """K draws z1 ~ q(z1|x) [K, B, D1] and log p(x|z1) - log q(z1|x) + log N(z1 inactive; 0, I) [K, B], no
        gradient (M1 is frozen; M2 models the active units, M1's prior the others)."""
        with torch.no_grad():
            q1 = self.features.encode(x)
            z1 = rsample(q1, (num_samples,), generator)
            terms = self.features.decode(z1).log_prob(x) - q1.log_prob(z1)
            rest = z1[..., ~self.active]
            rest = rest.float() if rest.dtype in (torch.bfloat16, torch.float16) else rest  # fp64 stays
            return z1, terms + Normal(0.0, 1.0).log_prob(rest).sum(-1)

    def prior(self) -> Distribution:
        """p(z2) = N(0, I), event shape (D2,)."""
        return self.head.prior()

    def log_py(self) -> float:
        """log p(y) of the uniform label prior."""
        return self.head.log_py()

    def classify(self, x: torch.Tensor) -> Categorical:
        """At z1 = the mean of M1's q(z1|x), batch (B,): q(y|z1) (`classify` "q"), or M2's own posterior
        p(y|z1) ∝ p(y) exp L(z1, y) with z2 at the mean of q(z2|z1,y) ("model").

        Args:
            x: the batch [B, C, H, W].
        """
        with torch.no_grad():
            codes = self._codes(self.features.encode(x).mean)
        if self.classify_with == "q":
            return self.head.classify(codes)
        head, n, c = self.head, codes.shape[0], self.num_classes
        q = head.encode(codes)  # batch (N, C)
        p = head.decode(q.mean, torch.arange(c, device=codes.device))
        if self.code_cov == "full":
            rec = self._full_codes(p.mean.reshape(n, c, self.code_dim), codes.reshape(n, 1, self.code_dim))
        else:
            rec = p.log_prob(codes.unsqueeze(1))
        return Categorical(logits=rec - kl_divergence(q, head.prior()))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """q(z2|z1,y) at z1 = the mean of q(z1|x): batch (B,), or (B, C) with y None (every class).

        Args:
            x: the batch [B, C, H, W].
            y: labels [B]; None: every class.
        """
        with torch.no_grad():
            z1 = self.features.encode(x).mean
        return self.head.encode(self._codes(z1), y)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> Distribution:
        """M1's p(x|z1) at z1 = the mean of p(z1|y,z2): a picture of (y, z2), not the marginal p(x|y,z2).

        Args:
            z: codes z2 [..., D2].
            y: labels broadcastable with z.shape[:-1].
        """
        active = self.head.decode(z, y).mean.reshape(*z.shape[:-1], self.code_dim)
        if self.components > 1:  # the mixture's mean: mu(y, z2) + sum_k pi_yk d_yk
            shift = (self.mix_logits.softmax(-1).unsqueeze(-1) * self.offsets).sum(-2)
            active = active + shift[torch.as_tensor(y, device=active.device)].to(active.dtype)
        z1 = active.new_zeros(*z.shape[:-1], self.active.numel())
        z1[..., self.active] = active  # the inactive units at their prior mean, 0
        return self.features.decode(z1)

    def class_terms(
        self,
        x: torch.Tensor,
        num_samples: int,
        generator: torch.Generator | None = None,
        analytic: bool = False,
    ) -> LabelTerms:
        """M2's per-class terms on K draws of z1 ~ q(z1|x), with M1's log p(x|z1) in rec and log q(z1|x) in kl
        (so the bounds are on log p(x)): each [K, B, C], log q(y|z1) [K, B, C].

        Args:
            x: the batch [B, C, H, W].
            num_samples: K, the draws per datum (each a z1 and, per class, a z2).
            generator: the random stream of the draws; None: torch's global one.
            analytic: z2's KL in closed form (z1's term stays a Monte Carlo one).
        """
        k, b, c = num_samples, x.shape[0], self.num_classes
        z1, m1 = self._m1_terms(x, k, generator)
        rec, kl, log_qy = self._head_terms(self._codes(z1), generator, analytic)
        m1 = m1.reshape(k, b, 1)
        return LabelTerms(
            rec.reshape(k, b, c) + m1,  # log p(x|z1) + log p(z1|y,z2); kl gets nothing from M1: it is in m1
            kl.reshape(k, b, c),
            log_qy.reshape(k, b, c),
        )

    def log_importance_weights(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """[K, B] log p(x|z1) p^(z1) / q(z1|x) with p^(z1) = sum_y p(z1, y, z2_y) / q(z2_y|z1, y): unbiased
        for p(x) since p^ is unbiased for M2's p(z1) given z1.

        Args:
            x: the batch [B, C, H, W].
            num_samples: K, the draws per datum.
            generator: the random stream of the draws; None: torch's global one.
        """
        z1, m1 = self._m1_terms(x, num_samples, generator)
        rec, kl, _ = self._head_terms(self._codes(z1), generator)
        return m1 + (torch.logsumexp(rec - kl, dim=-1) + self.log_py()).reshape(m1.shape)

    def scale_tril(self) -> torch.Tensor:
        """[C, D, D] Cholesky factors of p(z1|y,z2)'s per-class covariance (code_cov "full"; [C, K, D, D] with K
        components); the diagonal is softplus(raw) + SD_FLOOR, kept away from 0."""
        raw = self.tril_raw  # its own dtype: float32 (float64 in tests), never bf16
        diag = F.softplus(torch.diagonal(raw, dim1=-2, dim2=-1) + SOFTPLUS_INV_ONE) + SD_FLOOR
        return torch.tril(raw, -1) + torch.diag_embed(diag)

    def _full_codes(self, mean: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """log N(codes; mean, L_y L_y^T) per class, mean [..., C, D] and codes [..., 1, D], in the factors' dtype
        (never bf16)."""
        dtype = self.tril_raw.dtype
        mean, codes = mean.to(dtype), codes.to(dtype)
        if self.components == 1:
            return MultivariateNormal(mean, scale_tril=self.scale_tril()).log_prob(codes)
        parts = MultivariateNormal(mean.unsqueeze(-2) + self.offsets.to(dtype), scale_tril=self.scale_tril())
        weights = Categorical(logits=self.mix_logits.to(dtype).expand(*parts.batch_shape))
        return MixtureSameFamily(weights, parts).log_prob(codes)

    def _head_terms(
        self, codes: torch.Tensor, generator: torch.Generator | None, analytic: bool = False
    ) -> LabelTerms:
        """M2's terms on codes [N, 1, 1, D] (one z2 per code and class): rec, kl and log q(y|z1), [1, N, C]."""
        if self.code_cov != "full":
            return self.head.class_terms(codes, 1, generator, analytic)
        head, n, c = self.head, codes.shape[0], self.num_classes
        q = head.encode(codes)
        z = draw_z(q, 1, generator)  # [1, N, C, D2]
        mean = head.decode(z, torch.arange(c, device=codes.device)).mean.reshape(1, n, c, self.code_dim)
        rec = self._full_codes(mean, codes.reshape(1, n, 1, self.code_dim))
        kl = kl_divergence(q, head.prior())[None] if analytic else q.log_prob(z) - head.prior().log_prob(z)
        return LabelTerms(rec, kl, torch.log_softmax(head.classifier(codes), -1)[None])

    @torch.no_grad()
    def generate(
        self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """n images [n, C, H, W] in [0, 1]: z2 ~ p(z2), labels y (default 0, 1, 2, ...), z1 the mean of
        p(z1|y,z2), the picture M1's decoded mean.

        Args:
            n: how many images.
            generator: the random stream of z2.
            y: the labels [n] to draw; None: 0, 1, 2, ... in turn.
        """
        z2, labels = labelled_draws(self.head, n, generator, y)
        return self.decode(z2, labels).mean.clamp(0.0, 1.0)


def build_m2(cfg: ModelConfig, shape: tuple[int, int, int]) -> nn.Module:
    """M2 on the images, or with `model.features` set, M1+M2 on that run's codes.

    Args:
        cfg: the model config.
        shape: one datum's shape (C, H, W).
    """
    return StackedM2(cfg, shape) if cfg.features else M2(cfg, shape)
