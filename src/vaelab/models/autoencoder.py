"""The deterministic autoencoder: the seeds' baseline, with the VAE's bodies and likelihood.

It is trained on reconstruction alone. Its "samples" decode draws from N(0, I) and from a Gaussian fitted
to its training codes: the first shows that nothing ties its code space to a prior, the second that even a
fitted Gaussian lands in holes of that space. That is why it is not a generative model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models.vae import decode_with, likelihood_from, make_bodies


class Autoencoder(nn.Module):
    """x -> code z = f(x) -> p(x|z); `encode` returns a point mass (a Normal of zero width)."""

    def __init__(self, cfg: ModelConfig, shape: tuple[int, int, int]) -> None:
        super().__init__()
        if cfg.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {cfg.latent_dim}")
        self.shape = tuple(shape)
        self.latent_dim = cfg.latent_dim
        self.likelihood = likelihood_from(cfg, self.shape)
        self.encoder, self.decoder = make_bodies(cfg, self.shape, self.likelihood.factor)
        self.head = nn.Linear(self.encoder.out_features, cfg.latent_dim)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic code f(x), [B, D].

        Args:
            x: the batch [B, C, H, W].
        """
        return self.head(self.encoder(x))

    def encode(self, x: torch.Tensor) -> Distribution:
        """The code as a point mass: its mean (and every draw) is f(x); it has no density.

        Args:
            x: the batch [B, C, H, W].
        """
        z = self.code(x)
        return Independent(Normal(z, torch.zeros_like(z), validate_args=False), 1)

    def decode(self, z: torch.Tensor) -> Distribution:
        """p(x|z): batch z.shape[:-1], event one datum's shape.

        Args:
            z: codes [..., D].
        """
        return decode_with(self.decoder, self.likelihood, z)


def fitted_gaussian(codes: torch.Tensor, jitter: float = 1e-5) -> MultivariateNormal:
    """A full-covariance Gaussian fitted to codes [N, D] (maximum likelihood, with a little jitter).

    Args:
        codes: training codes [N, D].
        jitter: added to the covariance's diagonal.
    """
    mean = codes.mean(0)
    centred = codes - mean
    cov = centred.T @ centred / max(len(codes) - 1, 1)
    cov = cov + jitter * torch.eye(codes.shape[1], device=codes.device, dtype=codes.dtype)
    return MultivariateNormal(mean, covariance_matrix=cov)
