"""Arithmetic on log scale: the one `log_mean_exp` that every bound and estimator shares.

log (1/n) sum_i exp(a_i) = logsumexp(a) - log n, computed through `torch.logsumexp` so that it never overflows.
It turns K importance weights into the IWAE bound (Burda et al. 2016) or an importance-sampled log p(x), C AIS
chains into one estimate (Neal 2001), and equal-weight mixture components into one density.
"""

from __future__ import annotations

import math

import torch


def log_mean_exp(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/n) sum_i exp(log_w_i) along `dim` (n = log_w.shape[dim]): the log of a mean of weights.

    Args:
        log_w: log-weights (or any log-values), of any shape.
        dim: the dimension to average over; it is removed from the result.
    """
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])
