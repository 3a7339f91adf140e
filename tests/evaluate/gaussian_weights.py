"""Importance sampling whose weights' tail is known (test helpers): a Gaussian target N(0, s_p^2) with the
proposal N(0, s_q^2).

w = p(z) / q(z) = (s_q / s_p) exp(z^2 (1/s_q^2 - 1/s_p^2) / 2), z ~ q. For s_q < s_p, P(w > t) falls as
t^(-1/k) up to a slowly varying factor (1/sqrt(log t)), with k = 1 - s_q^2 / s_p^2: the weights have finite
moments of order r < 1/k = s_p^2 / (s_p^2 - s_q^2). For s_q > s_p they are bounded (k < 0). The target is a
normalised density, so log p(x) = log E_q[w] = 0 for every datum.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Normal

from vaelab.data import Prepared


class GaussianWeights(nn.Module):
    """A latent-variable "model" whose log-weights are those of IS of N(0, s_p^2) with proposal N(0, s_q^2);
    x only sets how many data there are (each datum draws its own K weights)."""

    def __init__(self, s_q: float, s_p: float) -> None:
        super().__init__()
        zero = torch.zeros((), dtype=torch.float64)
        self.q, self.p = Normal(zero, zero + s_q), Normal(zero, zero + s_p)

    def log_importance_weights(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        z = self.q.stddev * torch.randn(num_samples, len(x), generator=generator, dtype=torch.float64)
        return self.p.log_prob(z) - self.q.log_prob(z)


def true_k(s_q: float, s_p: float) -> float:
    """The shape of the weights' Pareto tail, 1 - s_q^2 / s_p^2."""
    return 1 - s_q**2 / s_p**2


def blank_split(n: int) -> Prepared:
    """n one-pixel images (their values are not used): a split to evaluate GaussianWeights on."""
    return Prepared(torch.zeros(n, 1, 1, 1, dtype=torch.uint8), None, "none", False, "blank")
