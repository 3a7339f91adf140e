"""Priors p(z): modules returning a torch Distribution with event shape (D,), on the model's device, and the
diagonal Gaussian mixture that the VampPrior is."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal, constraints

from vaelab.device import autocast_off

# worst-case rounding (nats of log-density) the mixture accepts from its float32 expansion before it recomputes a
# component in float64: codes of unit size against scales of 0.2 in 40 dimensions stay under it (bound ~0.009),
# a collapsed component (scale 1e-5) is 1e7 times over
MIXTURE_TOLERANCE = 0.01


def _expanded_squares(
    z: torch.Tensor, locs: torch.Tensor, scales: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_d (z_d - mu_kd)^2 / sigma_kd^2 as matrix products, [..., K]; and the size of its terms
    (sum_d (z_d^2 + mu_kd^2) / sigma_kd^2, detached) that its rounding error scales with."""
    prec = scales.pow(-2)  # [K, D]
    z2 = z.pow(2) @ prec.T
    m2 = (locs.pow(2) * prec).sum(-1)
    return z2 - 2 * z @ (locs * prec).T + m2, (z2 + m2).detach()


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
    a difference of order 1): in float32, and worse in bf16, it gave log-densities of +4e6 at a VampPrior's
    collapsed components, which IWAE training then chased (docs/speedrun.md). So it runs outside autocast on
    centred codes, in float32 where its rounding bound is small and in float64 for the components where it is
    not (float32 throughout on MPS, which has no float64), floored at 0.
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
        kind, d = z.device.type, self.locs.shape[-1]
        with autocast_off(kind):
            out = dtype = torch.promote_types(torch.promote_types(z.dtype, self.locs.dtype), torch.float32)
            mixed = dtype == torch.float32 and kind != "mps"  # float32, with float64 where it is needed
            if mixed and torch.compiler.is_compiling():
                dtype, mixed = torch.float64, False  # a compiled graph takes no data-dependent choice
            centre = self.locs.detach().to(dtype).mean(0)  # a shift the squares do not see; smaller terms
            zc, locs, scales = z.to(dtype) - centre, self.locs.to(dtype) - centre, self.scales.to(dtype)
            quad, terms = _expanded_squares(zc, locs, scales)
            if mixed and terms.numel():
                # Higham's bound on the squares' rounding, (D + 3) eps times their terms, halved for the
                # log-density, per component over all points; the components where it passes
                # MIXTURE_TOLERANCE nats (small scales) are computed again in float64 (on CUDA `nonzero` waits
                # for the device: one sync a call)
                bound = terms.reshape(-1, terms.shape[-1]).amax(0) * ((d + 3) * torch.finfo(dtype).eps / 2)
                redo = (bound > MIXTURE_TOLERANCE).nonzero().squeeze(-1)
                if redo.numel():
                    c64 = centre.double()  # centred again from the inputs: float32's centring rounds too
                    z64, locs64 = z.double() - c64, self.locs[redo].double() - c64
                    wide, _ = _expanded_squares(z64, locs64, self.scales[redo].double())
                    quad = quad.index_copy(-1, redo, wide.to(dtype))
            norm = scales.log().sum(-1) + 0.5 * d * math.log(2 * math.pi)
            return (-0.5 * quad.clamp_min(0) - norm).to(out)

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
