"""Decoder likelihoods p(x|z): a module maps the decoder's output to a torch Distribution over one datum.

Every log_prob keeps its normalising constant, so a log-likelihood is a true log-density (or log-mass) in
nats: Bernoulli (logits), continuous Bernoulli (Loaiza-Ganem & Cunningham 2019, with its normaliser),
Gaussian (fixed, learned shared, learned per-pixel or decoder-predicted variance, floored; the mean the
decoder's output itself or its sigmoid, in (0, 1) as in Kingma & Welling 2014's Frey Face model), and the
discretized logistic of 8-bit intensities (Salimans et al. 2017). Each class registers under its name in
`LIKELIHOODS` (`model.likelihood`), each Gaussian variance under its name in `GAUSSIAN_VARIANCES`, and
each map from the decoder's output to the Gaussian's mean under its name in `GAUSSIAN_MEANS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, ContinuousBernoulli, Distribution, Independent, Normal, constraints

from vaelab.errors import ConfigError
from vaelab.registry import Registry


class Likelihood(nn.Module):
    """Maps decoder output [..., factor*C, H, W] to a Distribution with event shape (C, H, W)."""

    factor = 1  # how many decoder channels per data channel
    binary_data = False  # True: the data must be 0/1

    def __init__(self, shape: tuple[int, int, int], **_: object) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def image(self, dist: Distribution) -> torch.Tensor:
        """What to show as the decoded picture: the mean, clipped to [0, 1].

        Args:
            dist: a distribution this likelihood made.
        """
        return dist.mean.clamp(0.0, 1.0)


LIKELIHOODS: Registry[type[Likelihood]] = Registry("likelihood")


class BinaryBernoulli(Bernoulli):
    """Bernoulli(logits) with log_prob = x * logits - softplus(logits): exact for any x, three cheap passes.

    torch's Bernoulli.log_prob (binary cross-entropy with broadcasting) makes about six passes over the
    [K, B, pixels] logits that importance sampling scores. This form needs no check of the data (so no host
    sync and no graph break under torch.compile).
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return value * self.logits - F.softplus(self.logits)


@LIKELIHOODS.register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """Pixels are independent Bernoulli variables with the decoder's logits."""

    binary_data = True

    def forward(self, out: torch.Tensor) -> Distribution:
        return Independent(BinaryBernoulli(logits=out, validate_args=False), 3)


class LogitContinuousBernoulli(ContinuousBernoulli):
    """torch's ContinuousBernoulli with its log-normaliser computed from the logits.

    torch computes it from probabilities clamped in float32, so for |logit| beyond ~16 it stops growing and
    log p(x) comes out too low by log(|logit| / 15.9) a pixel. From the logit eta: C = eta / tanh(eta / 2),
    log C = log|eta| - log tanh(|eta| / 2), with its Taylor form log 2 + eta^2 / 12 near 0 (accurate to float32
    rounding for |eta| < 1e-2)."""

    def _cont_bern_log_norm(self) -> torch.Tensor:
        a = self.logits.abs()
        small = a < 1e-2
        safe = torch.where(small, torch.ones_like(a), a)
        exact = torch.log(safe) - torch.log(torch.tanh(safe / 2))
        return torch.where(small, math.log(2.0) + a * a / 12, exact)


@LIKELIHOODS.register("continuous-bernoulli")
class ContinuousBernoulliLikelihood(Likelihood):
    """The continuous Bernoulli on [0, 1], normaliser included (`LogitContinuousBernoulli`)."""

    def forward(self, out: torch.Tensor) -> Distribution:
        return Independent(LogitContinuousBernoulli(logits=out, validate_args=False), 3)


def _fixed(lik: Likelihood, raw: float) -> None:
    lik.register_buffer("raw", torch.tensor(raw))


def _shared(lik: Likelihood, raw: float) -> None:
    lik.raw = nn.Parameter(torch.tensor(raw))


def _per_pixel(lik: Likelihood, raw: float) -> None:
    lik.raw = nn.Parameter(torch.full(lik.shape, raw))


# How sigma^2 = floor + softplus(raw) gets its raw value: each variance kind sets `raw` on the likelihood (a
# buffer, a learned scalar, a learned image); "decoder" keeps a fixed offset to the decoder's second output.
GAUSSIAN_VARIANCES: Registry[Callable[[Likelihood, float], None]] = Registry(
    "gaussian_variance",
    {"fixed": _fixed, "shared": _shared, "per-pixel": _per_pixel, "decoder": _fixed},
)


# The Gaussian's mean from the decoder's output: the output itself (any real), or its sigmoid, a mean in (0, 1)
# for intensities in [0, 1] (Kingma & Welling 2014, appendix C.2: "the means are constrained to (0, 1) by a
# sigmoidal activation function at the decoder output"). The density is N(x; mean, sigma^2) either way.
GAUSSIAN_MEANS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry(
    "gaussian_mean", {"identity": lambda out: out, "sigmoid": torch.sigmoid}
)


@LIKELIHOODS.register("gaussian")
class GaussianLikelihood(Likelihood):
    """N(x; mu(z), sigma^2) per pixel; sigma^2 = floor + softplus(raw) for learned variances; mu the decoder's
    output or its sigmoid (`gaussian_mean`)."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        gaussian_variance: str = "shared",
        gaussian_sigma: float = 0.1,
        variance_floor: float = 1e-4,
        gaussian_mean: str = "identity",
        **_: object,
    ) -> None:
        super().__init__(shape)
        make_raw = GAUSSIAN_VARIANCES.lookup(gaussian_variance)
        self.mean_of = GAUSSIAN_MEANS.lookup(gaussian_mean)
        self.mean_name = gaussian_mean
        if gaussian_sigma <= 0 or variance_floor < 0 or gaussian_sigma**2 <= variance_floor:
            raise ConfigError(
                f"need gaussian_sigma^2 > variance_floor >= 0, got sigma {gaussian_sigma}, floor {variance_floor}"
            )
        self.mode = gaussian_variance
        self.floor = float(variance_floor)
        self.factor = 2 if gaussian_variance == "decoder" else 1
        start = gaussian_sigma**2 - self.floor
        make_raw(self, math.log(math.expm1(start)))  # softplus^{-1}: variances start at gaussian_sigma^2

    def variance(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """sigma^2, never below the floor.

        Args:
            out: the decoder's variance output (decoder mode); None: the learned or fixed one.
        """
        raw = self.raw if out is None else out + self.raw
        return self.floor + F.softplus(raw)

    def forward(self, out: torch.Tensor) -> Distribution:
        if self.mode == "decoder":
            loc, raw = out.chunk(2, dim=-3)
            var = self.variance(raw)
        else:
            loc, var = out, self.variance()
        loc = self.mean_of(loc)
        return Independent(Normal(loc, var.sqrt().expand_as(loc), validate_args=False), 3)


class DiscretizedLogistic(Distribution):
    """Logistic(mu, s) integrated over the 256 bins of an 8-bit intensity in [0, 1] (edge bins open)."""

    arg_constraints: ClassVar[dict] = {"loc": constraints.real, "log_scale": constraints.real}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(
        self, loc: torch.Tensor, log_scale: torch.Tensor, bins: int = 256, validate_args: bool | None = False
    ):
        self.loc, self.log_scale = torch.broadcast_tensors(loc, log_scale)
        self.bins = bins
        super().__init__(self.loc.shape, validate_args=validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        half = 0.5 / (self.bins - 1)
        inv_s = torch.exp(-self.log_scale)
        centred = value - self.loc
        upper = inv_s * (centred + half)
        lower = inv_s * (centred - half)
        # log(sigmoid(u) - sigmoid(l)) computed stably as in PixelCNN++
        cdf_delta = torch.sigmoid(upper) - torch.sigmoid(lower)
        mid = inv_s * centred
        log_pdf_mid = mid - self.log_scale - 2.0 * F.softplus(mid) + math.log(2 * half)
        inner = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp_min(1e-12)), log_pdf_mid)
        log_cdf_upper = upper - F.softplus(upper)  # log sigmoid(upper), for the first bin
        log_one_minus_cdf_lower = -F.softplus(lower)  # log(1 - sigmoid(lower)), for the last bin
        out = torch.where(
            value < half, log_cdf_upper, torch.where(value > 1 - half, log_one_minus_cdf_lower, inner)
        )
        return out

    @property
    def mean(self) -> torch.Tensor:
        return self.loc.clamp(0.0, 1.0)

    def sample_with(self, sample_shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        """Inverse-CDF draw, snapped to the 8-bit grid.

        Args:
            sample_shape: the leading shape of the draws.
            generator: the random stream.
        """
        shape = torch.Size(sample_shape) + self.loc.shape
        u = torch.rand(shape, generator=generator, device=self.loc.device, dtype=self.loc.dtype).clamp(
            1e-5, 1 - 1e-5
        )
        x = self.loc + torch.exp(self.log_scale) * (torch.log(u) - torch.log1p(-u))
        return torch.round(x.clamp(0.0, 1.0) * (self.bins - 1)) / (self.bins - 1)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        return self.sample_with(tuple(sample_shape), None)


@LIKELIHOODS.register("discretized-logistic")
class DiscretizedLogisticLikelihood(Likelihood):
    """8-bit intensities: a discretized logistic per pixel, location and log-scale from the decoder."""

    factor = 2

    def forward(self, out: torch.Tensor) -> Distribution:
        loc, log_scale = out.chunk(2, dim=-3)
        return Independent(DiscretizedLogistic(loc, log_scale.clamp_min(-7.0)), 3)


def build_likelihood(name: str, shape: tuple[int, int, int], **options: object) -> Likelihood:
    """The likelihood called `name` for data of `shape`; a ConfigError listing the choices if unknown.

    Args:
        name: a key of LIKELIHOODS.
        shape: one datum's shape (C, H, W).
        **options: the likelihood's own settings (gaussian_variance, gaussian_sigma, variance_floor,
            gaussian_mean).
    """
    return LIKELIHOODS.lookup(name)(shape, **options)


# The mixed-type likelihood of table rows registers itself as "mixed" (its own module: tables are not images).
from vaelab.distributions import mixed as _mixed  # noqa: E402, F401
