"""The variational autoencoder (Kingma & Welling 2014; Rezende et al. 2014).

q(z|x) is a diagonal Gaussian whose `rsample` is the reparameterisation trick (or, with model.posterior, a flow
over it read from the same encoder features: `vaelab.distributions.flows`), p(z) = N(0, I), and p(x|z) is a
likelihood chosen by name. Everything (ELBO, IWAE bound, importance-sampled log p(x)) derives from
`log_importance_weights`, the public protocol of DESIGN.md; prior / encode / decode make it a
`vaelab.models.protocol.OneLatentLayer`. The bodies come from the `vaelab.nets.BODIES` table (`model.body`), the
Gaussian head from `vaelab.distributions.gaussian`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution

from vaelab.config import ModelConfig
from vaelab.distributions.flows import build_flow, with_flow
from vaelab.distributions.gaussian import MIN_SCALE, diagonal_gaussian
from vaelab.distributions.likelihoods import Likelihood, build_likelihood
from vaelab.distributions.priors import StandardNormalPrior
from vaelab.distributions.sampling import rsample
from vaelab.errors import ConfigError
from vaelab.nets import BODIES, make_bodies

__all__ = ["BODIES", "MIN_SCALE", "VAE", "decode_with", "likelihood_from", "make_bodies"]


def likelihood_from(cfg: ModelConfig, shape: tuple[int, int, int]) -> Likelihood:
    """The decoder likelihood named in `cfg`, with its options from `cfg` (every model builds its own here).

    Args:
        cfg: the model config (likelihood, gaussian_variance, gaussian_mean, gaussian_sigma, variance_floor,
            and a table's layout, `table`, for the likelihood mixed).
        shape: one datum's shape (C, H, W).
    """
    return build_likelihood(
        cfg.likelihood,
        shape,
        gaussian_variance=cfg.gaussian_variance,
        gaussian_mean=cfg.gaussian_mean,
        gaussian_sigma=cfg.gaussian_sigma,
        variance_floor=cfg.variance_floor,
        table=cfg.table,
    )


def decode_with(decoder: nn.Module, likelihood: Likelihood, z: torch.Tensor) -> Distribution:
    """Run a decoder body on z of any leading shape [..., D]; batch shape of the result is z.shape[:-1].

    Args:
        decoder: a body mapping [N, D] to the likelihood's input [N, factor * C, H, W].
        likelihood: turns that output into p(x|z).
        z: latent codes [..., D].
    """
    lead = z.shape[:-1]
    out = decoder(z.reshape(-1, z.shape[-1]))
    return likelihood(out.view(*lead, *out.shape[1:]))


class VAE(nn.Module):
    """A one-latent-layer VAE: Gaussian encoder, N(0, I) prior, likelihood decoder."""

    def __init__(self, cfg: ModelConfig, shape: tuple[int, int, int]) -> None:
        super().__init__()
        if cfg.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {cfg.latent_dim}")
        self.shape = tuple(shape)
        self.latent_dim = cfg.latent_dim
        self.likelihood = likelihood_from(cfg, self.shape)
        self.encoder, self.decoder = make_bodies(cfg, self.shape, self.likelihood.factor)
        self.head = nn.Linear(self.encoder.out_features, 2 * cfg.latent_dim)
        self.flow = build_flow(cfg.posterior, self.encoder.out_features, cfg.latent_dim)  # None: gaussian
        self.prior_net = StandardNormalPrior(cfg.latent_dim)

    def prior(self) -> Distribution:
        """p(z), event shape (D,)."""
        return self.prior_net()

    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x): a diagonal Gaussian (or a flow over it), batch (B,), event (D,).

        Args:
            x: the batch [B, C, H, W].
        """
        h = self.encoder(x)
        return with_flow(self.flow, h, diagonal_gaussian(self.head(h)))

    def base_posterior(self, x: torch.Tensor) -> Distribution:
        """The diagonal Gaussian of q(z|x), before any flow: batch (B,), event (D,).

        Args:
            x: the batch [B, C, H, W].
        """
        return diagonal_gaussian(self.head(self.encoder(x)))

    def decode(self, z: torch.Tensor) -> Distribution:
        """p(x|z): batch z.shape[:-1], event one datum's shape.

        Args:
            z: latent codes [..., D].
        """
        return decode_with(self.decoder, self.likelihood, z)

    def log_importance_weights(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """[K, B] log p(x, z_k) - log q(z_k | x) for K draws z_k ~ q(z|x).

        Args:
            x: the batch [B, C, H, W].
            num_samples: K, the draws per datum.
            generator: the random stream of the draws; None: torch's global one.
        """
        q = self.encode(x)
        z = rsample(q, (num_samples,), generator)
        return self.decode(z).log_prob(x) + self.prior().log_prob(z) - q.log_prob(z)
