"""The VampPrior (Tomczak & Welling 2018): the prior is the encoder's mixture over K learned pseudo-inputs.

p(z) = (1/K) sum_k q(z | u_k), with the pseudo-inputs u_k images that train with the rest of the model (kept
in [0, 1] by a hard tanh, started near 0.05 as the paper does on MNIST; K = model.extra["pseudo_inputs"],
500 by default). The optimal prior for a given encoder is the aggregate posterior (1/N) sum_n q(z | x_n);
the VampPrior approximates it with K << N learned points. KL(q(z|x) || p(z)) has no closed form against a
mixture, so its ELBO uses the Monte Carlo KL: `vaelab train --model vampprior` sets objective.kl=mc and an
explicit objective.kl=analytic is refused. With a flow posterior (model.posterior) the components stay the
encoder's Gaussians before the flow, q0(z | u_k): the mixture's density needs no flow inverse at each of the K
pseudo-inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.config import ModelConfig
from vaelab.distributions.priors import DiagonalGaussianMixture
from vaelab.errors import ConfigError
from vaelab.models.vae import VAE

PSEUDO_INPUTS = 500
INIT_MEAN, INIT_STD = 0.05, 0.01


def pseudo_inputs(extra: dict, shape: tuple[int, ...]) -> nn.Parameter:
    """K = extra["pseudo_inputs"] (500) learned images of `shape`, started near 0.05; a ConfigError in one line
    for a bad K. Shared by every model with a VampPrior (this one, the hierarchical VAE's top layer).

    Args:
        extra: the model's model.extra settings.
        shape: one image's shape (C, H, W).
    """
    k = extra.get("pseudo_inputs", PSEUDO_INPUTS)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"model.extra.pseudo_inputs must be an integer >= 1, got {k!r}")
    return nn.Parameter(torch.randn(k, *shape) * INIT_STD + INIT_MEAN)


def pseudo_images(u: torch.Tensor) -> torch.Tensor:
    """The pseudo-inputs as the encoder reads them: kept in [0, 1] by a hard tanh."""
    return F.hardtanh(u, 0.0, 1.0)


class VampPriorVAE(VAE):
    """A VAE whose prior is the variational mixture of posteriors at K learned pseudo-inputs."""

    def __init__(self, cfg: ModelConfig, shape: tuple[int, int, int]) -> None:
        super().__init__(cfg, shape)
        self.pseudo_inputs = pseudo_inputs(cfg.extra, self.shape)

    def prior(self) -> DiagonalGaussianMixture:
        """p(z) = (1/K) sum_k q0(z | u_k), q0 the encoder's Gaussian (q itself without a flow): event shape (D,)."""
        q = self.base_posterior(pseudo_images(self.pseudo_inputs)).base_dist
        return DiagonalGaussianMixture(q.loc, q.scale)
