"""Flow posteriors: q(z|x) as the encoder's diagonal Gaussian pushed through K invertible maps (`model.posterior`).

`planar:K`: K planar layers f(z) = z + u_hat tanh(w^T z + b) (Rezende & Mohamed 2015), with u, w, b read from the
encoder's features for each datum (amortised, as in the paper's experiments) and u_hat the projection of u that
keeps a layer invertible (w^T u_hat = -1 + softplus(w^T u) > -1).
`iaf:K[:WIDTH]`: K inverse autoregressive steps (Kingma et al. 2016): (m, s) = MADE(z, h), sigma = sigmoid(s),
z <- sigma * z + (1 - sigma) * m, the context h being the encoder's features, the variable order reversed
between steps; each MADE (Germain et al. 2015) has two masked ELU layers of WIDTH units (default 320).
`sylvester:K`: K triangular Sylvester layers f(z) = z + P R tanh(R~ P^T z + b) (van den Berg et al. 2018, T-SNF),
R and R~ upper triangular with diagonals in (-1, 1) (so each layer is invertible), P the identity or the reversal
in turn, all read from the encoder's features for each datum; log|det J| = sum_i log(1 + R_ii R~_ii tanh'(.)_i).

Each layer is a `torch.distributions.Transform` with its log|det J|, and q(z|x) is a `FlowPosterior`, a
`TransformedDistribution` over the Independent Normal base: `rsample` and `log_prob` are torch's, so
log_importance_weights, IS, the decomposition and the report use it unchanged, and KL(q || p) is a Monte Carlo
term. `log_prob` at a point q did not just draw inverts the layers (`vaelab.distributions.flow_transforms`,
where the layers live). A flow has no closed-form mean: `mean` and `stddev` are Monte Carlo estimates from MOMENT_DRAWS fixed draws.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import (
    Distribution,
    Independent,
    Normal,
    Transform,
    TransformedDistribution,
)

from vaelab.distributions.flow_transforms import (
    MADE,
    IAFTransform,
    PlanarTransform,
    SylvesterTransform,
    constrain,
)
from vaelab.errors import ConfigError
from vaelab.registry import Registry

GAUSSIAN = "gaussian"
IAF_WIDTH = 320  # the MADE's hidden units per layer, unless iaf:K:WIDTH says otherwise
MOMENT_DRAWS = 64  # draws behind a flow's mean and stddev: their error is about sd / 8
MOMENT_SEED = 0


class FlowPosterior(TransformedDistribution):
    """q(z|x): a base Independent(Normal, 1) pushed through transforms; batch (B,), event (D,). `mean`, `variance`
    and `stddev` are Monte Carlo estimates from MOMENT_DRAWS draws of fixed noise (the same for every datum, so
    a datum's estimate does not depend on its batch)."""

    def __init__(self, base: Independent, transforms: Sequence[Transform]) -> None:
        super().__init__(base, list(transforms), validate_args=False)
        self._moments: tuple[torch.Tensor, torch.Tensor] | None = None

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Estimates of E[z] and Var[z], [*batch, D] each."""
        if self._moments is None:
            normal = self.base_dist.base_dist
            loc = normal.loc
            g = torch.Generator(device=loc.device).manual_seed(MOMENT_SEED)
            eps = torch.randn(MOMENT_DRAWS, loc.shape[-1], generator=g, device=loc.device, dtype=loc.dtype)
            z = loc + normal.scale * eps.view(MOMENT_DRAWS, *[1] * (loc.dim() - 1), loc.shape[-1])
            for t in self.transforms:
                z = t.push(z)
            self._moments = (z.mean(0), z.var(0))
        return self._moments

    @property
    def mean(self) -> torch.Tensor:
        return self.moments()[0]

    @property
    def variance(self) -> torch.Tensor:
        return self.moments()[1]

    @property
    def stddev(self) -> torch.Tensor:
        return self.variance.sqrt()


class PlanarFlow(nn.Module):
    """The amortised planar flow: K layers whose u, w, b [D, D, 1] are a linear map of the encoder's features."""

    def __init__(self, features: int, dim: int, length: int) -> None:
        super().__init__()
        self.dim, self.length = dim, length
        self.params = nn.Linear(features, length * (2 * dim + 1))

    def forward(self, h: torch.Tensor, base: Independent) -> FlowPosterior:
        """q(z|x) from the encoder's features h [B, F] and its base Gaussian."""
        d = self.dim
        p = self.params(h).unflatten(-1, (self.length, 2 * d + 1))
        w, b = p[..., d : 2 * d], p[..., 2 * d :]
        u_hat, c = constrain(p[..., :d], w)  # every layer at once
        layers = [
            PlanarTransform(u_hat[..., k, :], w[..., k, :], b[..., k, :], c[..., k, :])
            for k in range(self.length)
        ]
        return FlowPosterior(base, layers)


class IAFFlow(nn.Module):
    """K IAF steps, each a MADE that reads z and the encoder's features; the order is reversed between steps."""

    def __init__(self, features: int, dim: int, length: int, width: int = IAF_WIDTH) -> None:
        super().__init__()
        self.steps = nn.ModuleList(MADE(dim, width, features, reverse=k % 2 == 1) for k in range(length))

    def forward(self, h: torch.Tensor, base: Independent) -> FlowPosterior:
        """q(z|x) from the encoder's features h [B, F] and its base Gaussian."""
        return FlowPosterior(base, [IAFTransform(made, h) for made in self.steps])


class SylvesterFlow(nn.Module):
    """K triangular Sylvester layers whose R, R~ (off-diagonals from one D x D output, diagonals through tanh)
    and b are a linear map of the encoder's features; P alternates between identity and reversal."""

    def __init__(self, features: int, dim: int, length: int) -> None:
        super().__init__()
        self.dim, self.length = dim, length
        self.params = nn.Linear(features, length * (dim * dim + 3 * dim))
        self.register_buffer("upper", torch.ones(dim, dim).triu(1), persistent=False)

    def forward(self, h: torch.Tensor, base: Independent) -> FlowPosterior:
        """q(z|x) from the encoder's features h [B, F] and its base Gaussian."""
        d, up = self.dim, self.upper
        p = self.params(h).unflatten(-1, (self.length, d * d + 3 * d))
        full = p[..., : d * d].unflatten(-1, (d, d))
        tail = p[..., d * d :].unflatten(-1, (3, d))
        d1, d2 = torch.tanh(tail[..., :2, :]).unbind(-2)  # |R_ii|, |R~_ii| < 1: each layer is invertible
        b = tail[..., 2, :]
        r = full * up + torch.diag_embed(d1)
        r_tilde = full.transpose(-1, -2) * up + torch.diag_embed(d2)  # the lower part, transposed
        layers = [
            SylvesterTransform(r[..., k, :, :], r_tilde[..., k, :, :], b[..., k, :], reverse=k % 2 == 1)
            for k in range(self.length)
        ]
        return FlowPosterior(base, layers)


@dataclass(frozen=True)
class PosteriorKind:
    """A flow family: `build(features, dim, length, width)` makes its module; `form` is how a user writes it;
    `width` is its default hidden width (0: it takes none)."""

    build: Callable[[int, int, int, int], nn.Module]
    form: str
    width: int = 0


# model.posterior's flow families; "gaussian" (no flow) is the default.
POSTERIORS: Registry[PosteriorKind] = Registry(
    "posterior",
    {
        "planar": PosteriorKind(lambda f, d, k, _w: PlanarFlow(f, d, k), "planar:K"),
        "iaf": PosteriorKind(IAFFlow, "iaf:K[:WIDTH]", IAF_WIDTH),
        "sylvester": PosteriorKind(lambda f, d, k, _w: SylvesterFlow(f, d, k), "sylvester:K"),
    },
    more=GAUSSIAN,
)


@dataclass(frozen=True)
class Posterior:
    """A parsed model.posterior: its kind, flow length K (0: none) and hidden width (0: none)."""

    kind: str = GAUSSIAN
    length: int = 0
    width: int = 0

    @property
    def flow(self) -> bool:
        """q(z|x) is a flow (not the diagonal Gaussian alone)."""
        return self.kind != GAUSSIAN


def parse_posterior(text: object) -> Posterior:
    """model.posterior read: "gaussian", "planar:K", "iaf:K[:WIDTH]" or "sylvester:K"; a one-line ConfigError
    otherwise.

    Args:
        text: the setting's value.
    """
    choices = ", ".join([GAUSSIAN, *(k.form for k in POSTERIORS.values())])
    if not isinstance(text, str):
        raise ConfigError(f"model.posterior must be a string ({choices}), got {text!r}")
    kind, *numbers = text.split(":")
    if kind == GAUSSIAN and not numbers:
        return Posterior()
    if kind not in POSTERIORS:
        raise ConfigError(f"unknown model.posterior '{text}'; choose one of: {choices}")
    spec = POSTERIORS[kind]
    if len(numbers) > (2 if spec.width else 1):
        raise ConfigError(f"model.posterior '{text}': write it as {spec.form}")
    names = ("K, the number of flow layers", "WIDTH, the MADE's hidden units per layer")
    for name, n in zip(names, numbers or [""]):
        if not re.fullmatch(r"[0-9]+", n) or int(n) < 1:
            raise ConfigError(f"model.posterior '{text}': {name}, must be an integer >= 1 ({spec.form})")
    return Posterior(kind, int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else spec.width)


def build_flow(posterior: str, features: int, dim: int) -> nn.Module | None:
    """The flow of model.posterior for an encoder with `features` outputs and a D-dimensional z; None for gaussian.

    Args:
        posterior: model.posterior.
        features: the width of the encoder's features h (what the flow's parameters are read from).
        dim: D, the latent dimension.
    """
    p = parse_posterior(posterior)
    return POSTERIORS[p.kind].build(features, dim, p.length, p.width) if p.flow else None


def with_flow(flow: nn.Module | None, h: torch.Tensor, base: Independent) -> Distribution:
    """q(z|x): the base diagonal Gaussian, or the flow over it read from the encoder's features h."""
    return base if flow is None else flow(h, base)


def _base_and_layers(q: Distribution) -> tuple[Normal, list[Transform]]:
    """The Normal under a diagonal Gaussian Independent(Normal, 1) or a FlowPosterior, and the flow's layers."""
    layers = list(q.transforms) if isinstance(q, TransformedDistribution) else []
    return (q.base_dist if layers else q).base_dist, layers


def reparameterise_with_log_prob(q: Distribution, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`reparameterise`'s z and its log q(z), carried along the layers' log|det J| (no inverse, no cache: what an
    exported graph computes).

    Args:
        q: a diagonal Gaussian Independent(Normal, 1), or a FlowPosterior over one.
        eps: the noise, broadcastable against q's batch.
    """
    normal, layers = _base_and_layers(q)
    z = normal.loc + normal.scale * eps
    log_q = normal.log_prob(z).sum(-1)
    for t in layers:
        u, z = z, t(z)
        log_q = log_q - t.log_abs_det_jacobian(u, z).reshape(*log_q.shape, -1).sum(
            -1
        )  # elementwise: [..., D]
    return z, log_q


def reparameterise(q: Distribution, eps: torch.Tensor) -> torch.Tensor:
    """z of q for standard-normal noise eps [..., D]: loc + scale * eps, then q's transforms (if a flow).

    Args:
        q: a diagonal Gaussian Independent(Normal, 1), or a FlowPosterior over one.
        eps: the noise, broadcastable against q's batch.
    """
    normal, layers = _base_and_layers(q)
    z = normal.loc + normal.scale * eps
    for t in layers:
        z = t(z)
    return z
