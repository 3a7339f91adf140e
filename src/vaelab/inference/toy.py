"""Toy posteriors whose answer is known: the test bench for variational inference and MCMC.

Each model gives an unnormalised log joint log p(D, z) as a batched torch function, and the truth:
the evidence log p(D) = log ∫ p(D, z) dz, the posterior mean and covariance, and the normalised
posterior density on a grid. The conjugate Normal-Normal model has them in closed form; the others get
them by adaptive cubature (`scipy.integrate.cubature`, Gauss-Kronrod product rules) over a box that
holds all but a negligible part of the posterior mass, cross-checked by the trapezoid rule on a fine grid.
"""

from __future__ import annotations

import abc
import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from scipy import integrate
from torch import Tensor
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal
from torch.nn import functional as F

from vaelab.distributions.logmath import log_mean_exp
from vaelab.errors import VaelabError

# Points per axis of the evaluation grid, by dimension: spacing well below the posterior's scale, so the
# trapezoid rule (spectrally accurate for smooth densities that vanish at the box's faces) is exact to ~1e-9.
GRID_POINTS = {1: 2001, 2: 201, 3: 49}


@dataclass(frozen=True)
class Exact:
    """What is known about the posterior, and how it was computed."""

    log_evidence: float
    mean: np.ndarray  # [D]
    cov: np.ndarray  # [D, D]
    log_evidence_error: float  # absolute error estimate of log_evidence (0 for closed forms)
    method: str


@dataclass(frozen=True)
class Grid:
    """A regular grid over the model's box with the normalised posterior log density at each point."""

    axes: tuple[np.ndarray, ...]
    points: Tensor  # [M, D] float64, 'ij' order
    log_cell: float  # log volume of one cell: sum_i exp(log_cell) f(points_i) approximates ∫ f
    log_density: Tensor  # [M] log p(z | D)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)

    def as_array(self, values: Tensor) -> np.ndarray:
        """Values at the points [M] reshaped to the grid's shape, for contour plots.

        Args:
            values: values at the grid's points [M].
        """
        return values.detach().cpu().double().numpy().reshape(self.shape)

    def coarse(self, max_points: int = 10000) -> Grid:
        """Every s-th point along each axis, s the smallest stride giving <= max_points.

        For smooth densities that vanish at the box's faces the trapezoid rule converges faster than any
        power of the spacing, so a coarse grid is still exact to many digits: cheap enough for every step.

        Args:
            max_points: the most points the coarse grid may have.
        """
        n, d = len(self.axes[0]), len(self.axes)
        strides = [s for s in range(1, n) if (n - 1) % s == 0]
        return self.every(next((s for s in strides if ((n - 1) // s + 1) ** d <= max_points), strides[-1]))

    def every(self, stride: int) -> Grid:
        """The sub-grid of every `stride`-th point along each axis (both ends kept when stride divides n-1).

        Args:
            stride: keep every stride-th point along each axis.
        """
        axes = tuple(a[::stride] for a in self.axes)
        log_cell = self.log_cell + len(axes) * math.log(stride)
        return Grid(axes, self.pick(self.points, stride), log_cell, self.pick(self.log_density, stride))

    def pick(self, values: Tensor, stride: int) -> Tensor:
        """Values at the points [M, ...] restricted to the points of `every(stride)`.

        Args:
            values: values at the grid's points [M, ...].
            stride: as in `every`.
        """
        keep = np.ix_(*[np.arange(0, len(a), stride) for a in self.axes])
        return values.reshape(*self.shape, *values.shape[1:])[keep].reshape(-1, *values.shape[1:])


class ToyModel(abc.ABC):
    """A model with a Gaussian prior, a fixed data set and a known posterior."""

    name: ClassVar[str]
    description: ClassVar[str]
    dim: int
    bounds: np.ndarray  # [D, 2] box for quadrature and plots
    labels: tuple[str, ...]
    cubature_rtol: ClassVar[float] = 1e-9
    cubature_rule: ClassVar[str] = "gk21"

    @abc.abstractmethod
    def prior(self) -> Distribution:
        """p(z): a torch distribution with event shape (D,), float64."""

    @abc.abstractmethod
    def log_likelihood(self, z: Tensor) -> Tensor:
        """log p(D | z) for z of shape [..., D]; returns [...].

        Args:
            z: parameters [..., D].
        """

    def log_joint(self, z: Tensor) -> Tensor:
        """log p(D, z) = log p(D | z) + log p(z), batched over leading dims, in z's dtype and device.

        Args:
            z: parameters [..., D].
        """
        prior = self.prior()
        loc = prior.mean.to(z)
        scale = prior.stddev.to(z)
        return Independent(Normal(loc, scale, validate_args=False), 1).log_prob(z) + self.log_likelihood(z)

    def log_posterior(self, z: Tensor) -> Tensor:
        """log p(z | D) = log p(D, z) - log p(D).

        Args:
            z: parameters [..., D].
        """
        return self.log_joint(z) - self.exact.log_evidence

    def initial_points(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """Draws from the prior (float64 [num, D]): overdispersed starting points for chains and q.

        Args:
            num: how many points.
            generator: the random stream; None: torch's global one.
        """
        prior = self.prior()
        eps = torch.randn(num, self.dim, generator=generator, dtype=torch.float64)
        return prior.mean + eps * prior.stddev

    @functools.cached_property
    def exact(self) -> Exact:
        """log p(D), posterior mean and covariance (by cubature unless a subclass knows a closed form)."""
        return self.cubature()

    @functools.cached_property
    def grid(self) -> Grid:
        """The posterior density on a regular grid over `bounds` (normalised with the exact evidence)."""
        return self.grid_over(self.bounds)

    def grid_over(self, bounds: np.ndarray, points_per_axis: int | None = None) -> Grid:
        """The posterior density on a regular grid over any box [D, 2] (default: GRID_POINTS per axis).

        Args:
            bounds: the box [D, 2].
            points_per_axis: grid points per axis; None: GRID_POINTS[D].
        """
        n = GRID_POINTS[self.dim] if points_per_axis is None else points_per_axis
        axes = tuple(np.linspace(lo, hi, n) for lo, hi in bounds)
        mesh = np.meshgrid(*axes, indexing="ij")
        points = torch.from_numpy(np.stack([m.ravel() for m in mesh], axis=-1))
        log_cell = float(sum(math.log(a[1] - a[0]) for a in axes))
        with torch.no_grad():
            log_density = self._raw_grid_log_joint(points) - self.exact.log_evidence
        return Grid(axes, points, log_cell, log_density)

    def posterior_density_grid(self) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """(axes, density) with `density[i, j, ...]` = p(z | D) at (`axes[0][i]`, `axes[1][j]`, ...)."""
        g = self.grid
        return g.axes, g.as_array(g.log_density.exp())

    def cubature(self, rtol: float | None = None, atol: float = 1e-12) -> Exact:
        """∫ p(D, z) [1, z, z zᵀ] dz over the box by adaptive Gauss-Kronrod cubature.

        Args:
            rtol: relative tolerance; None: the model's own.
            atol: absolute tolerance.
        """
        d = self.dim
        rtol = self.cubature_rtol if rtol is None else rtol
        points = self._coarse_points()
        shift = float(self.log_joint(points).max())

        def integrand(x: np.ndarray) -> np.ndarray:
            z = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
            with torch.no_grad():
                w = (self.log_joint(z) - shift).exp().numpy()
            outer = (x[:, :, None] * x[:, None, :]).reshape(len(x), d * d)
            return w[:, None] * np.concatenate([np.ones((len(x), 1)), x, outer], axis=1)

        res = integrate.cubature(
            integrand, self.bounds[:, 0], self.bounds[:, 1], rtol=rtol, atol=atol, rule=self.cubature_rule
        )
        if res.status != "converged":
            raise VaelabError(f"cubature of model {self.name!r} did not converge (error {res.error[0]:.2g})")
        z0 = res.estimate[0]
        mean = res.estimate[1 : 1 + d] / z0
        cov = res.estimate[1 + d :].reshape(d, d) / z0 - np.outer(mean, mean)
        return Exact(
            log_evidence=math.log(z0) + shift,
            mean=mean,
            cov=(cov + cov.T) / 2,
            log_evidence_error=float(res.error[0] / z0),
            method=f"adaptive cubature (scipy.integrate.cubature, {self.cubature_rule})",
        )

    def posterior(self) -> Distribution | None:
        """The exact posterior as a torch distribution when it has a closed form, else None."""
        return None

    def _coarse_points(self) -> Tensor:
        axes = [torch.linspace(float(lo), float(hi), 41, dtype=torch.float64) for lo, hi in self.bounds]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, self.dim)

    def _raw_grid_log_joint(self, points: Tensor) -> Tensor:
        return torch.cat([self.log_joint(c) for c in points.split(16384)])


def _gaussian_prior(scale: np.ndarray) -> Distribution:
    s = torch.as_tensor(scale, dtype=torch.float64)
    return Independent(Normal(torch.zeros_like(s), s), 1)


class NormalNormal(ToyModel):
    """Unknown mean θ of correlated 2-D Gaussian data: the conjugate case, all in closed form."""

    name = "normal-normal"
    description = "2-D mean of correlated Gaussian data, prior N(0, 2²I): conjugate, exact in closed form"
    labels = ("θ₁", "θ₂")

    def __init__(self) -> None:
        self.dim = 2
        self.noise_cov = np.array([[1.0, 0.8], [0.8, 1.0]])
        self.noise_tril = np.linalg.cholesky(self.noise_cov)
        self.prior_scale = np.full(2, 2.0)
        rng = np.random.default_rng(0)
        self.data = rng.multivariate_normal([1.0, -0.5], self.noise_cov, size=10)
        post = self.posterior()
        sd = post.stddev.numpy()
        m = post.mean.numpy()
        self.bounds = np.stack([m - 8 * sd, m + 8 * sd], axis=1)

    def prior(self) -> Distribution:
        return _gaussian_prior(self.prior_scale)

    def log_likelihood(self, z: Tensor) -> Tensor:
        x = torch.as_tensor(self.data).to(z)
        tril = torch.as_tensor(self.noise_tril).to(z)
        noise = MultivariateNormal(torch.zeros_like(tril[0]), scale_tril=tril, validate_args=False)
        return noise.log_prob(x - z.unsqueeze(-2)).sum(-1)

    def posterior(self) -> Distribution:
        """N(m, S) with S⁻¹ = Σ₀⁻¹ + n Σ⁻¹ and m = S Σ⁻¹ Σᵢ xᵢ."""
        noise_prec = np.linalg.inv(self.noise_cov)
        prec = np.diag(self.prior_scale**-2.0) + len(self.data) * noise_prec
        cov = np.linalg.inv(prec)
        mean = cov @ noise_prec @ self.data.sum(0)
        return MultivariateNormal(torch.as_tensor(mean), covariance_matrix=torch.as_tensor((cov + cov.T) / 2))

    @functools.cached_property
    def exact(self) -> Exact:
        """Candidate's formula: log p(D) = log p(D | θ) + log p(θ) - log p(θ | D) at any θ (here θ = 0)."""
        post = self.posterior()
        z = torch.zeros(2, dtype=torch.float64)
        log_evidence = float(self.log_joint(z) - post.log_prob(z))
        return Exact(log_evidence, post.mean.numpy(), post.covariance_matrix.numpy(), 0.0, "closed form")


class Bimodal1D(ToyModel):
    """y ~ N(z², 1): the sign of z is not identified, so the posterior has two mirror-image modes."""

    name = "bimodal-1d"
    description = "y ~ N(z², 1), prior N(0, 1), 4 data points: two mirror-image modes near ±1"
    labels = ("z",)
    data = np.array([1.1, 1.6, 0.9, 1.5])

    def __init__(self) -> None:
        self.dim = 1
        self.bounds = np.array([[-3.5, 3.5]])

    def prior(self) -> Distribution:
        return _gaussian_prior(np.ones(1))

    def log_likelihood(self, z: Tensor) -> Tensor:
        return Normal(z**2, 1.0, validate_args=False).log_prob(torch.as_tensor(self.data).to(z)).sum(-1)


class LabelSwitching(ToyModel):
    """Means of a two-component Gaussian mixture: swapping the labels leaves p(D | z) unchanged."""

    name = "bimodal-2d"
    description = "means (μ₁, μ₂) of ½N(μ₁,1)+½N(μ₂,1), 30 points, prior N(0, 2²I): two label-switched modes"
    labels = ("μ₁", "μ₂")

    def __init__(self) -> None:
        self.dim = 2
        rng = np.random.default_rng(1)
        self.data = np.where(rng.random(30) < 0.5, -1.5, 1.5) + rng.normal(size=30)
        self.bounds = np.array([[-4.5, 4.5], [-4.5, 4.5]])

    def prior(self) -> Distribution:
        return _gaussian_prior(np.full(2, 2.0))

    def log_likelihood(self, z: Tensor) -> Tensor:
        x = torch.as_tensor(self.data).to(z)
        comp = Normal(z.unsqueeze(-2), 1.0, validate_args=False).log_prob(x[:, None])  # [..., n, 2]
        return log_mean_exp(comp, dim=-1).sum(-1)  # the two components weigh 1/2 each


class Banana(ToyModel):
    """y ~ N(z₁² + z₂, ½²): only z₁² + z₂ is measured, so the posterior bends along a parabola."""

    name = "banana"
    description = "y ~ N(z₁² + z₂, 0.5²), 10 points, prior N(0, diag(1.5², 1)): a banana-shaped ridge"
    labels = ("z₁", "z₂")
    data = np.array([0.4, -0.3, 0.1, 0.6, -0.5, 0.2, 0.0, -0.2, 0.5, 0.1])

    def __init__(self) -> None:
        self.dim = 2
        self.bounds = np.array([[-4.0, 4.0], [-6.5, 2.5]])

    def prior(self) -> Distribution:
        return _gaussian_prior(np.array([1.5, 1.0]))

    def log_likelihood(self, z: Tensor) -> Tensor:
        loc = z[..., :1] ** 2 + z[..., 1:]
        return Normal(loc, 0.5, validate_args=False).log_prob(torch.as_tensor(self.data).to(z)).sum(-1)


class BreastCancerLogistic(ToyModel):
    """Bayesian logistic regression on two standardised features of scikit-learn's breast-cancer data."""

    name = "logistic"
    description = "logistic regression, intercept + mean radius + mean texture (569 tumours), prior N(0, 2²I)"
    labels = ("intercept", "radius", "texture")
    features = ("mean radius", "mean texture")
    cubature_rtol = 1e-7  # 3-D product rules are costly; the error estimate still comes out near 1e-9
    cubature_rule = "gk15"

    def __init__(self) -> None:
        from sklearn.datasets import load_breast_cancer

        ds = load_breast_cancer()
        cols = [list(ds.feature_names).index(f) for f in self.features]
        x = ds.data[:, cols]
        x = (x - x.mean(0)) / x.std(0)
        self.design = np.concatenate([np.ones((len(x), 1)), x], axis=1)
        self.target = ds.target.astype(np.float64)
        self.dim = 3
        mode, cov = self._laplace()
        sd = np.sqrt(np.diag(cov))
        self.bounds = np.stack([mode - 8 * sd, mode + 8 * sd], axis=1)

    def prior(self) -> Distribution:
        return _gaussian_prior(np.full(3, 2.0))

    def log_likelihood(self, z: Tensor) -> Tensor:
        # Σᵢ yᵢηᵢ - softplus(ηᵢ) with η = Xz: the same as Bernoulli(logits=η).log_prob(y), summed, but the
        # first term needs only Xᵀy, which halves the work on large batches of z.
        x = torch.as_tensor(self.design).to(z)
        xty = torch.as_tensor(self.design.T @ self.target).to(z)
        flat = z.reshape(-1, self.dim)
        parts = [c @ xty - F.softplus(c @ x.T).sum(-1) for c in flat.split(4096)]
        return torch.cat(parts).reshape(z.shape[:-1])

    def _laplace(self) -> tuple[np.ndarray, np.ndarray]:
        """Mode and inverse Hessian by Newton's method: only used to place the box."""
        x, y, prior_prec = self.design, self.target, np.eye(self.dim) / 4.0
        w = np.zeros(self.dim)
        for _ in range(30):
            p = 1.0 / (1.0 + np.exp(-x @ w))
            hess = (x.T * (p * (1 - p))) @ x + prior_prec
            w = w + np.linalg.solve(hess, x.T @ (y - p) - prior_prec @ w)
        return w, np.linalg.inv(hess)


MODELS: dict[str, type[ToyModel]] = {
    cls.name: cls for cls in (NormalNormal, Bimodal1D, LabelSwitching, Banana, BreastCancerLogistic)
}


@functools.cache
def get_model(name: str) -> ToyModel:
    """The model registered under `name` (built once, then shared: models are read-only).

    Args:
        name: a key of MODELS.
    """
    if name not in MODELS:
        raise VaelabError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}")
    return MODELS[name]()
