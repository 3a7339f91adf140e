"""Priors p(z): modules returning a torch Distribution with event shape (D,), on the model's device, and the
diagonal Gaussian mixture that the VampPrior is."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal, constraints

from vaelab.device import autocast_off


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) in D dimensions."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)


class DiagonalGaussianMixture(Distribution):
    """sum_k pi_k N(z; mu_k, diag(sigma_k^2)) over z [..., D], e.g. the VampPrior (Tomczak & Welling 2018).

    log_prob expands the squares into matrix products, so scoring [N, D] points against K components costs
    memory [N, K] rather than torch's MixtureSameFamily [N, K, D] (which runs out for K = 500 and big N). The
    expansion cancels catastrophically when a component's scale is small (terms of z^2 / sigma^2 = 1e10 for
    a difference of order 1): it is computed in float64 outside autocast (float32 on MPS, which has no float64)
    and floored at 0. In float32, and worse in bf16, it gave log-densities of +4e6 at a VampPrior's collapsed
    components, which IWAE training then chased (docs/speedrun.md).
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, locs: torch.Tensor, scales: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        self.locs, self.scales = locs, scales
        self.logits = (
            torch.zeros(locs.shape[0], device=locs.device, dtype=locs.dtype) if logits is None else logits
        )
        super().__init__(torch.Size(), torch.Size(locs.shape[-1:]), validate_args=False)

    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; mu_k, sigma_k^2) for every component: [..., K].

        Args:
            z: points [..., D].
        """
        kind = z.device.type
        wide = torch.float32 if kind == "mps" else torch.float64
        with autocast_off(kind):
            zz, locs, scales = z.to(wide), self.locs.to(wide), self.scales.to(wide)
            prec = scales.pow(-2)  # [K, D]
            quad = zz.pow(2) @ prec.T - 2 * zz @ (locs * prec).T + (locs.pow(2) * prec).sum(-1)
            norm = scales.log().sum(-1) + 0.5 * locs.shape[-1] * math.log(2 * math.pi)
            out = -0.5 * quad.clamp_min(0) - norm
        return out.to(torch.promote_types(self.locs.dtype, torch.float32))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self.component_log_prob(value) + self.logits.log_softmax(-1), dim=-1)

    def sample_with(self, sample_shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        """Pick components by their weights, then draw from each: [*sample_shape, D].

        Args:
            sample_shape: the leading shape of the draws.
            generator: the random stream.
        """
        n = int(torch.Size(sample_shape).numel())
        k = torch.multinomial(self.logits.softmax(-1), n, replacement=True, generator=generator)
        eps = torch.randn(
            n, self.locs.shape[-1], generator=generator, device=self.locs.device, dtype=self.locs.dtype
        )
        return (self.locs[k] + self.scales[k] * eps).reshape(*sample_shape, -1)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        with torch.no_grad():
            return self.sample_with(tuple(sample_shape), None)
