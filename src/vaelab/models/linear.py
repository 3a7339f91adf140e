"""Probabilistic PCA as a VAE (Tipping & Bishop 1999): a linear-Gaussian decoder whose log p(x) is exact.

p(z) = N(0, I), p(x|z) = N(Wz + b, sigma^2 I), so p(x) = N(b, W W^T + sigma^2 I) and the posterior p(z|x) is
Gaussian in closed form. With an amortised linear encoder q(z|x) that is (deliberately) imperfect, every
identity of variational inference can be checked exactly: ELBO = log p(x) - KL(q(z|x) || p(z|x)).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from vaelab.config import ModelConfig
from vaelab.distributions.priors import StandardNormalPrior
from vaelab.distributions.sampling import rsample
from vaelab.errors import ConfigError


class LinearGaussianVAE(nn.Module):
    """Linear encoder and decoder, Gaussian everywhere; exact evidence and posterior are available."""

    def __init__(self, cfg: ModelConfig, shape: tuple[int, int, int]) -> None:
        super().__init__()
        if cfg.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {cfg.latent_dim}")
        self.shape = tuple(shape)
        self.latent_dim = cfg.latent_dim
        n = int(torch.Size(shape).numel())
        self.decoder = nn.Linear(cfg.latent_dim, n)
        self.encoder = nn.Linear(n, 2 * cfg.latent_dim)
        self.log_sigma = nn.Parameter(torch.tensor(math.log(cfg.gaussian_sigma)))
        self.prior_net = StandardNormalPrior(cfg.latent_dim)

    def prior(self) -> Distribution:
        """p(z) = N(0, I)."""
        return self.prior_net()

    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x) = N(A x + c, diag(s(x)^2)).

        Args:
            x: the batch [B, C, H, W].
        """
        loc, log_scale = self.encoder(x.flatten(1)).chunk(2, dim=-1)
        return Independent(Normal(loc, log_scale.exp(), validate_args=False), 1)

    def decode(self, z: torch.Tensor) -> Distribution:
        """p(x|z) = N(W z + b, sigma^2 I) over one datum's shape.

        Args:
            z: latent codes [..., D].
        """
        loc = self.decoder(z).view(*z.shape[:-1], *self.shape)
        return Independent(Normal(loc, self.log_sigma.exp().expand_as(loc), validate_args=False), 3)

    def log_importance_weights(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """[K, B] log p(x, z_k) - log q(z_k | x).

        Args:
            x: the batch [B, C, H, W].
            num_samples: K, the draws per datum.
            generator: the random stream of the draws; None: torch's global one.
        """
        q = self.encode(x)
        z = rsample(q, (num_samples,), generator)
        return self.decode(z).log_prob(x) + self.prior().log_prob(z) - q.log_prob(z)

    def marginal(self) -> MultivariateNormal:
        """p(x) = N(b, W W^T + sigma^2 I) over flattened data."""
        w, b = self.decoder.weight, self.decoder.bias
        cov = w @ w.T + self.log_sigma.exp() ** 2 * torch.eye(len(b), device=b.device, dtype=b.dtype)
        return MultivariateNormal(b, covariance_matrix=cov)

    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in closed form, [B].

        Args:
            x: the batch [B, C, H, W].
        """
        return self.marginal().log_prob(x.flatten(1))

    def exact_posterior(self, x: torch.Tensor) -> MultivariateNormal:
        """p(z|x) = N(S W^T (x - b) / sigma^2, S) with S = (I + W^T W / sigma^2)^-1.

        Args:
            x: the batch [B, C, H, W].
        """
        w, b = self.decoder.weight, self.decoder.bias
        s2 = self.log_sigma.exp() ** 2
        precision = torch.eye(self.latent_dim, device=w.device, dtype=w.dtype) + w.T @ w / s2
        cov = torch.linalg.inv(precision)
        mean = (x.flatten(1) - b) @ w @ cov.T / s2
        return MultivariateNormal(mean, covariance_matrix=cov.expand(len(mean), -1, -1))
