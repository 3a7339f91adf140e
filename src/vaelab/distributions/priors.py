"""Priors p(z): modules returning a torch Distribution with event shape (D,), on the model's device."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) in D dimensions."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)
