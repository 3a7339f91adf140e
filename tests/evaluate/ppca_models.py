"""Probabilistic PCA models whose log p(x), posterior and KL gaps are known exactly (test helpers)."""

from __future__ import annotations

import torch

from vaelab.config import ModelConfig
from vaelab.models.linear import LinearGaussianVAE


def make_ppca(
    latent: int = 2,
    shape=(1, 2, 3),
    sigma: float = 0.5,
    w_scale: float = 1.0,
    enc_scale: float = 0.2,
    seed: int = 0,
):
    torch.manual_seed(seed)
    m = LinearGaussianVAE(ModelConfig(latent_dim=latent, gaussian_sigma=sigma), shape).double()
    with torch.no_grad():
        m.decoder.weight.normal_(0, w_scale)
        m.decoder.bias.normal_(0, 0.3)
        m.encoder.weight.normal_(0, enc_scale)
    return m.eval()


def set_encoder(m: LinearGaussianVAE, shift: float = 0.0, inflate: float = 1.0) -> None:
    """q(z|x) = N(E[z|x] + shift * sd, (inflate * sd)^2) per dimension, sd^2 the exact posterior's marginal variances.

    With shift 0 and inflate 1 and a 1-D latent, q(z|x) equals p(z|x) exactly (a linear mean, a constant variance).
    """
    w, b = m.decoder.weight, m.decoder.bias
    s2 = m.log_sigma.exp() ** 2
    d = m.latent_dim
    cov = torch.linalg.inv(torch.eye(d, dtype=w.dtype) + w.T @ w / s2)
    a = cov @ w.T / s2  # [D, n]: E[z|x] = a (x - b)
    sd = cov.diagonal().sqrt()
    with torch.no_grad():
        m.encoder.weight.zero_()
        m.encoder.weight[:d] = a
        m.encoder.bias[:d] = -(a @ b) + shift * sd
        m.encoder.bias[d:] = torch.log(inflate * sd)


def set_exact_encoder(m: LinearGaussianVAE) -> None:
    """The exact posterior as q(z|x) (possible for a 1-D latent)."""
    set_encoder(m)


def simulate(m: LinearGaussianVAE, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = torch.randn(n, m.latent_dim, generator=g, dtype=torch.float64)
        loc = m.decode(z).mean
        return loc + m.log_sigma.exp() * torch.randn(loc.shape, generator=g, dtype=torch.float64)
