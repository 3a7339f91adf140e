"""The variational autoencoder (Kingma & Welling 2014; Rezende et al. 2014).

q(z|x) is a diagonal Gaussian whose `rsample` is the reparameterisation trick, p(z) = N(0, I), and p(x|z) is a
likelihood chosen by name. Everything (ELBO, IWAE bound, importance-sampled log p(x)) derives from
`log_importance_weights`, the public protocol of DESIGN.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from vaelab.config import ModelConfig
from vaelab.distributions.likelihoods import Likelihood, build_likelihood
from vaelab.distributions.priors import StandardNormalPrior
from vaelab.distributions.sampling import rsample
from vaelab.errors import ConfigError
from vaelab.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

BODIES = ("mlp", "conv")
# q(z|x)'s standard deviation is softplus(raw) + this, so it never collapses to exactly zero.
MIN_SCALE = 1e-5


def make_bodies(cfg: ModelConfig, shape: tuple[int, int, int], factor: int) -> tuple[nn.Module, nn.Module]:
    """Encoder and decoder bodies of the kind `cfg.body`, sized by `cfg.hidden` / `cfg.conv_channels`."""
    if cfg.body == "mlp":
        enc = MLPEncoder(shape, cfg.hidden, cfg.activation)
        dec = MLPDecoder(cfg.latent_dim, tuple(reversed(cfg.hidden)), shape, factor, cfg.activation)
    elif cfg.body == "conv":
        width = cfg.hidden[0] if cfg.hidden else 256
        enc = ConvEncoder(shape, cfg.conv_channels, width, cfg.activation)
        dec = ConvDecoder(cfg.latent_dim, shape, cfg.conv_channels, width, factor, cfg.activation)
    else:
        raise ConfigError(f"unknown body '{cfg.body}'; choose one of: {', '.join(BODIES)}")
    return enc, dec


def likelihood_from(cfg: ModelConfig, shape: tuple[int, int, int]) -> Likelihood:
    """The decoder likelihood named in `cfg`."""
    return build_likelihood(
        cfg.likelihood,
        shape,
        gaussian_variance=cfg.gaussian_variance,
        gaussian_sigma=cfg.gaussian_sigma,
        variance_floor=cfg.variance_floor,
    )


def decode_with(decoder: nn.Module, likelihood: Likelihood, z: torch.Tensor) -> Distribution:
    """Run a decoder body on z of any leading shape [..., D]; batch shape of the result is z.shape[:-1]."""
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
        self.prior_net = StandardNormalPrior(cfg.latent_dim)

    def prior(self) -> Distribution:
        """p(z), event shape (D,)."""
        return self.prior_net()

    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x): a diagonal Gaussian, batch (B,), event (D,)."""
        loc, raw = self.head(self.encoder(x)).chunk(2, dim=-1)
        return Independent(Normal(loc, F.softplus(raw) + MIN_SCALE, validate_args=False), 1)

    def decode(self, z: torch.Tensor) -> Distribution:
        """p(x|z): batch z.shape[:-1], event one datum's shape."""
        return decode_with(self.decoder, self.likelihood, z)

    def log_importance_weights(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """[K, B] log p(x, z_k) - log q(z_k | x) for K draws z_k ~ q(z|x)."""
        q = self.encode(x)
        z = rsample(q, (num_samples,), generator)
        return self.decode(z).log_prob(x) + self.prior().log_prob(z) - q.log_prob(z)
