"""The diagonal Gaussian of amortised inference: one head from network outputs, its reparameterised draws, and
its stop-gradient copy.

q(z|x) = N(mu, diag(sigma^2)) with (mu, raw) = chunk(params) and sigma = softplus(raw) + MIN_SCALE (Kingma &
Welling 2014), an `Independent(Normal, 1)`: batch params.shape[:-1], event (D,). Draws are reparameterised,
z = mu + sigma * eps; eps comes from `vaelab.data.batches.shared_draw`, so a datum gets the same eps whether
its batch runs in one process or is split over ranks. `stopped(q)` is the same density with its parameters
detached: the log q of doubly reparameterised gradients (DReG, Tucker et al. 2019).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, Independent, Normal, TransformedDistribution

from vaelab.data.batches import shared_draw
from vaelab.distributions.sampling import rsample
from vaelab.errors import ConfigError

# The standard deviation is softplus(raw) + MIN_SCALE, so it never collapses to exactly zero.
MIN_SCALE = 1e-5


def diagonal_gaussian(params: torch.Tensor) -> Independent:
    """N(loc, diag(scale^2)) from network outputs [..., 2D]: the first D are the location, the last D the raw
    scale (scale = softplus(raw) + MIN_SCALE); batch params.shape[:-1], event (D,).

    Args:
        params: the head's output, location then raw scale along the last dimension.
    """
    loc, raw = params.chunk(2, dim=-1)
    return Independent(Normal(loc, F.softplus(raw) + MIN_SCALE, validate_args=False), 1)


def draw_z(q: Distribution, num_samples: int, generator: torch.Generator | None) -> torch.Tensor:
    """K reparameterised draws z ~ q, [K, *batch, D]; a Gaussian's eps comes from `shared_draw` (its batch
    dimension is q's first), so a datum's draw is the same in one process and split over ranks (DDP); a flow
    posterior pushes its base Gaussian's draw through its transforms.

    Args:
        q: the distribution to draw from (any with a generator-driven `rsample`).
        num_samples: K, the draws per datum.
        generator: the random stream; None draws from torch's global one.
    """
    if isinstance(q, TransformedDistribution):  # a flow: the base's draw, then the transforms
        z = draw_z(q.base_dist, num_samples, generator)
        for t in q.transforms:
            z = t(z)
        return z
    base = q.base_dist if isinstance(q, Independent) else q
    if generator is None or not isinstance(base, Normal):
        return rsample(q, (num_samples,), generator)
    eps = shared_draw(torch.randn, (num_samples, *base.loc.shape), generator, base.loc, dim=1)
    return base.loc + base.scale * eps


def factorised(dist: Distribution) -> Normal | None:
    """The Normal under an Independent(Normal, 1), i.e. a distribution that factorises over its dimensions;
    None for any other distribution.

    Args:
        dist: the distribution to look into.
    """
    base = dist.base_dist if isinstance(dist, Independent) else None
    return base if isinstance(base, Normal) and dist.reinterpreted_batch_ndims == 1 else None


def stopped(q: Distribution) -> Distribution:
    """q with its parameters detached (the same density, no gradient to them): DReG's log q.

    Args:
        q: a diagonal Gaussian, Independent(Normal, 1); anything else is a ConfigError.
    """
    base = factorised(q)
    if base is None:
        raise ConfigError(f"DReG needs a diagonal Gaussian q(z|x), got {type(q).__name__}")
    return Independent(Normal(base.loc.detach(), base.scale.detach(), validate_args=False), 1)
