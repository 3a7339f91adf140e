"""The families of q(z) that `vaelab vi` fits: diagonal and full-covariance Gaussians, mixtures of Gaussians,
and a normalizing flow of rational-quadratic spline couplings (Durkan et al. 2019), each a torch Distribution
built from torch.distributions parts, with trainable parameters in an nn.Module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import (
    AffineTransform,
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    Transform,
    TransformedDistribution,
    constraints,
)
from torch.nn import functional as F

from vaelab.errors import VaelabError
from vaelab.inference.toy import ToyModel

ExpectFn = Callable[[Tensor, Distribution], Tensor]


def _inv_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


MIN_BIN, MIN_DERIV = 1e-3, 1e-3


def rq_spline(x: Tensor, params: Tensor, bound: float = 5.0, inverse: bool = False) -> tuple[Tensor, Tensor]:
    """Monotone rational-quadratic spline on [-bound, bound], identity outside (Durkan et al. 2019).

    `params` [..., 3K-1] (broadcast against x[..., None]) hold K bin widths, K heights and K-1 interior
    knot derivatives, unconstrained; all zeros is the identity. Returns (y, log |dy/dx|), elementwise.

    Args:
        x: the points, any shape.
        params: the spline's unconstrained parameters [..., 3K-1].
        bound: the spline acts on [-bound, bound].
        inverse: apply the inverse map.
    """
    k = (params.shape[-1] + 1) // 3
    min_bin, min_deriv = MIN_BIN, MIN_DERIV
    widths = min_bin + (1 - min_bin * k) * torch.softmax(params[..., :k], -1)
    heights = min_bin + (1 - min_bin * k) * torch.softmax(params[..., k : 2 * k], -1)
    derivs = min_deriv + F.softplus(params[..., 2 * k :] + math.log(math.expm1(1 - min_deriv)))
    derivs = F.pad(derivs, (1, 1), value=1.0)  # slope 1 at both ends joins the identity tails smoothly

    def knots(w: Tensor) -> Tensor:
        c = F.pad(torch.cumsum(w, -1)[..., :-1], (1, 0))
        return torch.cat([2 * bound * c - bound, torch.full_like(c[..., :1], bound)], -1)

    xk, yk = knots(widths), knots(heights)
    # One table of per-bin quantities, gathered once at each point's bin (built before broadcasting to x,
    # so constant parameters cost nothing per point).
    table = torch.stack(
        [xk[..., :-1], yk[..., :-1], xk.diff(dim=-1), yk.diff(dim=-1), derivs[..., :-1], derivs[..., 1:]], -2
    )
    inside = (x > -bound) & (x < bound)
    xc = x.clamp(-bound, bound)
    idx = (xc.unsqueeze(-1) >= (yk if inverse else xk)[..., 1:-1]).sum(-1, keepdim=True)
    shape = torch.broadcast_shapes((*x.shape, 6, k), table.shape)
    picked = table.expand(shape).gather(-1, idx.unsqueeze(-2).expand(*shape[:-1], 1)).squeeze(-1)
    x0, y0, w, h, d0, d1 = picked.unbind(-1)
    s = h / w
    c2 = d1 + d0 - 2 * s
    if inverse:
        dy = xc - y0
        a, b, c = h * (s - d0) + dy * c2, h * d0 - dy * c2, -s * dy
        xi = 2 * c / (-b - torch.sqrt((b * b - 4 * a * c).clamp(min=0)))
        y = x0 + xi * w
    else:
        xi = (xc - x0) / w
        y = y0 + h * (s * xi**2 + d0 * xi * (1 - xi)) / (s + c2 * xi * (1 - xi))
    den = s + c2 * xi * (1 - xi)
    log_det = (
        2 * torch.log(s)
        + torch.log(d1 * xi**2 + 2 * s * xi * (1 - xi) + d0 * (1 - xi) ** 2)
        - 2 * torch.log(den)
    )
    log_det = -log_det if inverse else log_det
    return torch.where(inside, y, x), torch.where(inside, log_det, torch.zeros_like(log_det))


class SplineTransform(Transform):
    """A spline bijection of the dims in `mask`, its parameters computed from the other dims (a coupling
    layer, Dinh et al. 2017); with every dim in `mask` and constant parameters it is elementwise."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, params_fn: Callable[[Tensor], Tensor], mask: Tensor):
        super().__init__(cache_size=1)
        self.params_fn, self.mask = params_fn, mask
        self._log_det: tuple[Tensor, Tensor, Tensor] | None = None  # the last (x, y, log |dy/dx|)

    def _spline(self, x: Tensor, inverse: bool) -> Tensor:
        mask = self.mask.to(x.device)
        y, log_det = rq_spline(x, self.params_fn(x * ~mask), inverse=inverse)
        y = torch.where(mask, y, x)
        log_det = (log_det * mask).sum(-1)
        # Keep the log-determinant of the last (x, y) pair: log_prob asks for it right after the inverse.
        self._log_det = (y, x, -log_det) if inverse else (x, y, log_det)
        return y

    def _call(self, x: Tensor) -> Tensor:
        return self._spline(x, inverse=False)

    def _inverse(self, y: Tensor) -> Tensor:
        return self._spline(y, inverse=True)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        cached = self._log_det
        if cached is not None and cached[0] is x and cached[1] is y:
            return cached[2]
        self._spline(x, inverse=False)
        return self._log_det[2]


class Family(nn.Module):
    """A parametric q(z) over R^D: a torch distribution plus reparameterised expectations under it."""

    name = ""
    description = ""

    def __init__(
        self, loc: Tensor, scale: Tensor, generator: torch.Generator | None = None, components: int = 2
    ):
        super().__init__()
        self.dim = loc.shape[-1]

    def distribution(self) -> Distribution:
        """q as a torch distribution (event shape (D,)) built from the current parameters."""
        raise NotImplementedError

    def rsample(self, q: Distribution, num_samples: int, generator: torch.Generator | None) -> Tensor:
        """[S, D] reparameterised draws from `q` (this family's distribution), with an explicit generator.

        Args:
            q: this family's distribution (from `distribution()`).
            num_samples: S, the draws.
            generator: the random stream; None: torch's global one.
        """
        raise NotImplementedError

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """[S, D] draws from q, no gradient.

        Args:
            num_samples: S, the draws.
            generator: the random stream; None: torch's global one.
        """
        with torch.no_grad():
            return self.rsample(self.distribution(), num_samples, generator)

    def expectation(self, fn: ExpectFn, num_samples: int, generator: torch.Generator | None) -> Tensor:
        """Reparameterised Monte Carlo estimate of E_q[fn(z, q)], differentiable in the parameters.

        Returns the per-sample values [S]; their mean is the estimate.

        Args:
            fn: fn(z [S, ...], q) -> values [S, ...].
            num_samples: S, the draws.
            generator: the random stream; None: torch's global one.
        """
        q = self.distribution()
        return fn(self.rsample(q, num_samples, generator), q)

    def _noise(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        p = next(self.parameters())
        return torch.randn(shape, generator=generator, dtype=p.dtype, device=p.device)


class DiagonalGaussian(Family):
    """q = N(m, diag(s²)): mean field. On a correlated posterior its reverse-KL optimum is too narrow."""

    name = "diagonal"
    description = "Gaussian with diagonal covariance (mean field)"

    def __init__(
        self, loc: Tensor, scale: Tensor, generator: torch.Generator | None = None, components: int = 2
    ):
        super().__init__(loc, scale)
        self.loc = nn.Parameter(loc.clone())
        self.raw_scale = nn.Parameter(_inv_softplus(scale.clone()))

    def distribution(self) -> Distribution:
        return MultivariateNormal(self.loc, scale_tril=torch.diag_embed(F.softplus(self.raw_scale)))

    def rsample(self, q: Distribution, num_samples: int, generator: torch.Generator | None) -> Tensor:
        return self.loc + self._noise((num_samples, self.dim), generator) * F.softplus(self.raw_scale)


class FullGaussian(Family):
    """q = N(m, L Lᵀ) with L lower triangular, positive diagonal: any Gaussian."""

    name = "full"
    description = "Gaussian with full covariance (Cholesky factor)"

    def __init__(
        self, loc: Tensor, scale: Tensor, generator: torch.Generator | None = None, components: int = 2
    ):
        super().__init__(loc, scale)
        self.loc = nn.Parameter(loc.clone())
        self.raw_diag = nn.Parameter(_inv_softplus(scale.clone()))
        self.off_diag = nn.Parameter(torch.zeros(self.dim, self.dim, dtype=loc.dtype))

    def scale_tril(self) -> Tensor:
        return torch.tril(self.off_diag, -1) + torch.diag_embed(F.softplus(self.raw_diag))

    def distribution(self) -> Distribution:
        return MultivariateNormal(self.loc, scale_tril=self.scale_tril())

    def rsample(self, q: Distribution, num_samples: int, generator: torch.Generator | None) -> Tensor:
        return self.loc + self._noise((num_samples, self.dim), generator) @ self.scale_tril().T


class GaussianMixture(Family):
    """q = Σ_k π_k N(m_k, diag(s_k²)). Its expectations are reparameterised within each component and
    weighted by π exactly (the component index is summed over, not sampled), so π gets gradients too."""

    name = "mixture"
    description = "mixture of diagonal Gaussians (--components of them)"

    def __init__(
        self, loc: Tensor, scale: Tensor, generator: torch.Generator | None = None, components: int = 2
    ):
        super().__init__(loc, scale)
        if components < 1:
            raise VaelabError(f"a mixture needs at least 1 component, got {components}")
        spread = torch.randn(components, self.dim, generator=generator, dtype=loc.dtype)
        self.locs = nn.Parameter(loc + scale * spread)
        self.raw_scales = nn.Parameter(_inv_softplus(scale.expand(components, -1).clone()))
        self.logits = nn.Parameter(torch.zeros(components, dtype=loc.dtype))

    def distribution(self) -> Distribution:
        comp = Independent(Normal(self.locs, F.softplus(self.raw_scales)), 1)
        return MixtureSameFamily(Categorical(logits=self.logits), comp)

    def rsample(self, q: Distribution, num_samples: int, generator: torch.Generator | None) -> Tensor:
        """Ancestral draws: the component index is discrete, so these are not differentiable in π."""
        probs = torch.softmax(self.logits.detach(), -1)
        k = torch.multinomial(probs, num_samples, replacement=True, generator=generator)
        eps = self._noise((num_samples, self.dim), generator)
        return self.locs[k] + eps * F.softplus(self.raw_scales)[k]

    def expectation(self, fn: ExpectFn, num_samples: int, generator: torch.Generator | None) -> Tensor:
        q = self.distribution()
        eps = self._noise((num_samples, *self.locs.shape), generator)
        values = fn(self.locs + eps * F.softplus(self.raw_scales), q)  # [S, K]
        return (values * torch.softmax(self.logits, -1)).sum(-1)


class SplineFlow(Family):
    """q = push-forward of N(0, I) through rational-quadratic spline layers then an affine map (Durkan et
    al. 2019, "Neural spline flows"): elementwise splines in 1-D, coupling splines in higher dimensions."""

    name = "flow"
    description = "normalizing flow: spline couplings + affine (torch.distributions transforms)"

    def __init__(
        self,
        loc: Tensor,
        scale: Tensor,
        generator: torch.Generator | None = None,
        components: int = 2,
        bins: int = 8,
        hidden: int = 32,
        layers: int = 4,
    ):
        super().__init__(loc, scale)
        d, self.bins = self.dim, bins
        self.loc = nn.Parameter(loc.clone())
        self.raw_scale = nn.Parameter(_inv_softplus(scale.clone()))
        self.elementwise = nn.Parameter(torch.zeros(d, 3 * bins - 1, dtype=loc.dtype))
        self.masks = [torch.arange(d) % 2 == i % 2 for i in range(layers)] if d > 1 else []
        self.conditioners = nn.ModuleList(self._conditioner(hidden, generator, loc.dtype) for _ in self.masks)

    def _conditioner(self, hidden: int, generator: torch.Generator | None, dtype: torch.dtype) -> nn.Module:
        d = self.dim
        net = nn.Sequential(
            nn.Linear(d, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, d * (3 * self.bins - 1)),
        ).to(dtype)
        with torch.no_grad():
            for layer in net:
                if isinstance(layer, nn.Linear):
                    layer.weight.copy_(
                        torch.randn(layer.weight.shape, generator=generator) / math.sqrt(layer.in_features)
                    )
                    layer.bias.zero_()
            net[-1].weight.zero_()  # every layer starts as the identity: q starts as N(loc, scale²)
        return net

    def distribution(self) -> Distribution:
        d, k = self.dim, 3 * self.bins - 1
        transforms: list[Any] = [SplineTransform(lambda x: self.elementwise, torch.ones(d, dtype=torch.bool))]
        for mask, net in zip(self.masks, self.conditioners):
            transforms.append(SplineTransform(lambda x, net=net: net(x).unflatten(-1, (d, k)), mask))
        transforms.append(AffineTransform(self.loc, F.softplus(self.raw_scale), event_dim=1, cache_size=1))
        zero = torch.zeros_like(self.loc)
        return TransformedDistribution(Independent(Normal(zero, torch.ones_like(zero)), 1), transforms)

    def rsample(self, q: Distribution, num_samples: int, generator: torch.Generator | None) -> Tensor:
        z = self._noise((num_samples, self.dim), generator)
        for t in q.transforms:
            z = t(z)
        return z


FAMILIES: dict[str, type[Family]] = {
    c.name: c for c in (DiagonalGaussian, FullGaussian, GaussianMixture, SplineFlow)
}


def make_family(
    name: str, model: ToyModel, generator: torch.Generator | None = None, components: int = 2
) -> Family:
    """A q of the named family (float64), centred on a draw from the prior with the prior's scale: a random
    start, so that symmetric posteriors do not hold q on their saddle point.

    Args:
        name: a key of FAMILIES.
        model: the toy model whose prior places the start.
        generator: the random stream; None: torch's global one.
        components: mixture components (the mixture family).
    """
    if name not in FAMILIES:
        raise VaelabError(f"unknown family {name!r}; choose from: {', '.join(FAMILIES)}")
    loc = model.initial_points(1, generator)[0]
    scale = model.prior().stddev.double()
    return FAMILIES[name](loc, scale, generator=generator, components=components)


# ---- ELBO gradient estimators: each returns (objective [S] whose mean to maximise, ELBO values [S], z)
