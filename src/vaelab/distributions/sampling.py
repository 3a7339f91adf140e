"""Sampling from torch.distributions with an explicit torch.Generator.

torch.distributions draws from the global RNG; vaelab's sampling and evaluation take a generator so that
every number is reproducible. Gaussians keep the reparameterisation trick: z = mu + sigma * eps; a
TransformedDistribution (a flow posterior, `vaelab.distributions.flows`) draws its base, then applies its transforms.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch.distributions import (
    Bernoulli,
    ContinuousBernoulli,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    TransformedDistribution,
)


@runtime_checkable
class SamplesWith(Protocol):
    """A distribution that draws with an explicit generator (vaelab's mixture, the discretized logistic)."""

    def sample_with(
        self, sample_shape: tuple[int, ...], generator: torch.Generator | None
    ) -> torch.Tensor: ...


@runtime_checkable
class RSamplesWith(Protocol):
    """A distribution that draws reparameterised samples with an explicit generator."""

    def rsample_with(
        self, sample_shape: tuple[int, ...], generator: torch.Generator | None
    ) -> torch.Tensor: ...


def rsample(
    dist: Distribution, sample_shape: tuple[int, ...] = (), generator: torch.Generator | None = None
) -> torch.Tensor:
    """A reparameterised draw (differentiable in the parameters) of shape sample_shape + batch + event.

    Args:
        dist: a Normal, ContinuousBernoulli, an Independent or TransformedDistribution of one, or any
            `RSamplesWith`.
        sample_shape: the leading shape of the draws.
        generator: the random stream; None draws with torch's own `rsample`.
    """
    if generator is None:
        return dist.rsample(torch.Size(sample_shape))
    if isinstance(dist, TransformedDistribution):
        z = rsample(dist.base_dist, sample_shape, generator)
        for t in dist.transforms:
            z = t(z)
        return z
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
    if isinstance(dist, RSamplesWith):
        return dist.rsample_with(sample_shape, generator)
    raise NotImplementedError(f"no generator-driven rsample for {type(dist).__name__}")


def sample(
    dist: Distribution, sample_shape: tuple[int, ...] = (), generator: torch.Generator | None = None
) -> torch.Tensor:
    """A draw (no gradient) of shape sample_shape + batch + event, using `generator` when given.

    Args:
        dist: any distribution that `rsample` draws, a Bernoulli, a MixtureSameFamily, or any `SamplesWith`.
        sample_shape: the leading shape of the draws.
        generator: the random stream; None draws with torch's own `sample`.
    """
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
        if isinstance(dist, SamplesWith):
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
