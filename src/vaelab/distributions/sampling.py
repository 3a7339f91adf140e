"""Sampling from torch.distributions with an explicit torch.Generator.

torch.distributions draws from the global RNG; vaelab's sampling and evaluation take a generator so that
every number is reproducible. Gaussians keep the reparameterisation trick: z = mu + sigma * eps.
"""

from __future__ import annotations

import torch
from torch.distributions import (
    Bernoulli,
    ContinuousBernoulli,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
)


def rsample(
    dist: Distribution, sample_shape: tuple[int, ...] = (), generator: torch.Generator | None = None
) -> torch.Tensor:
    """A reparameterised draw (differentiable in the parameters) of shape sample_shape + batch + event."""
    if generator is None:
        return dist.rsample(torch.Size(sample_shape))
    if isinstance(dist, Independent):
        return rsample(dist.base_dist, sample_shape, generator)
    if isinstance(dist, Normal):
        shape = torch.Size(sample_shape) + dist.loc.shape
        eps = torch.randn(shape, generator=generator, device=dist.loc.device, dtype=dist.loc.dtype)
        return dist.loc + dist.scale * eps
    if isinstance(dist, ContinuousBernoulli):
        shape = torch.Size(sample_shape) + dist.probs.shape
        u = torch.rand(shape, generator=generator, device=dist.probs.device, dtype=dist.probs.dtype)
        return dist.icdf(u)
    if hasattr(dist, "rsample_with"):
        return dist.rsample_with(sample_shape, generator)
    raise NotImplementedError(f"no generator-driven rsample for {type(dist).__name__}")


def sample(
    dist: Distribution, sample_shape: tuple[int, ...] = (), generator: torch.Generator | None = None
) -> torch.Tensor:
    """A draw (no gradient) of shape sample_shape + batch + event, using `generator` when given."""
    if generator is None:
        return dist.sample(torch.Size(sample_shape))
    with torch.no_grad():
        if isinstance(dist, Independent):
            return sample(dist.base_dist, sample_shape, generator)
        if isinstance(dist, Bernoulli):
            probs = dist.probs.expand(torch.Size(sample_shape) + dist.probs.shape)
            return torch.bernoulli(probs, generator=generator)
        if isinstance(dist, MixtureSameFamily):
            return _sample_mixture(dist, sample_shape, generator)
        if hasattr(dist, "sample_with"):
            return dist.sample_with(sample_shape, generator)
        return rsample(dist, sample_shape, generator).detach()


def _sample_mixture(
    dist: MixtureSameFamily, sample_shape: tuple[int, ...], generator: torch.Generator
) -> torch.Tensor:
    probs = dist.mixture_distribution.probs  # [..., K]
    n = int(torch.Size(sample_shape).numel())
    flat = probs.reshape(-1, probs.shape[-1])
    idx = torch.multinomial(flat, n, replacement=True, generator=generator)  # [batch, n]
    idx = idx.T.reshape(torch.Size(sample_shape) + probs.shape[:-1])  # sample + batch
    comps = sample(dist.component_distribution, sample_shape, generator)  # sample + batch + [K] + event
    event = len(dist.event_shape)
    gather = idx.reshape((*idx.shape, 1) + (1,) * event).expand(
        (*idx.shape, 1, *comps.shape[len(idx.shape) + 1 :])
    )
    return comps.gather(len(idx.shape), gather).squeeze(len(idx.shape))
