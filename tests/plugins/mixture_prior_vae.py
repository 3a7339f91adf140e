"""A VAE with a learned mixture-of-Gaussians prior, written outside vaelab: one file, one registration.

p(z) = sum_k pi_k N(z; mu_k, diag sigma_k^2) with K learned components (model.extra.components, default 10),
q(z|x) a diagonal Gaussian, p(x|z) Bernoulli. prior, encode and decode return torch.distributions, and
log_importance_weights gives log p(x|z_k) + log p(z_k) - log q(z_k|x) for K draws: vaelab derives the ELBO,
the IWAE bound and importance-sampled log p(x) from these.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent, MixtureSameFamily, Normal

import vaelab
from vaelab.distributions.sampling import rsample


class MixturePriorVAE(nn.Module):
    """VAE with a learned mixture-of-Gaussians prior p(z) (K = model.extra.components, default 10)."""

    def __init__(self, cfg: vaelab.ModelConfig, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.shape, self.latent_dim = tuple(shape), cfg.latent_dim
        pixels, hidden, k = shape[0] * shape[1] * shape[2], cfg.hidden[0], cfg.extra.get("components", 10)
        self.encoder = nn.Sequential(
            nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, 2 * cfg.latent_dim)
        )
        self.decoder = nn.Sequential(nn.Linear(cfg.latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, pixels))
        self.logits = nn.Parameter(torch.zeros(k))
        self.means = nn.Parameter(torch.randn(k, cfg.latent_dim))
        self.raw_scales = nn.Parameter(torch.zeros(k, cfg.latent_dim))

    def prior(self) -> MixtureSameFamily:
        """p(z): K diagonal Gaussians, event shape (D,)."""
        components = Independent(Normal(self.means, F.softplus(self.raw_scales) + 1e-3), 1)
        return MixtureSameFamily(Categorical(logits=self.logits), components)

    def encode(self, x: torch.Tensor) -> Independent:
        """q(z|x): a diagonal Gaussian, batch (B,), event (D,)."""
        loc, raw = self.encoder(x).chunk(2, dim=-1)
        return Independent(Normal(loc, F.softplus(raw) + 1e-5), 1)

    def decode(self, z: torch.Tensor) -> Independent:
        """p(x|z): independent Bernoulli pixels, batch z.shape[:-1], event (C, H, W)."""
        logits = self.decoder(z).unflatten(-1, self.shape)
        return Independent(Bernoulli(logits=logits, validate_args=False), 3)

    def log_importance_weights(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """[K, B] log p(x, z_k) - log q(z_k | x), z_k ~ q(z|x) drawn with `generator` (reproducible)."""
        q = self.encode(x)
        z = rsample(q, (num_samples,), generator)
        return self.decode(z).log_prob(x) + self.prior().log_prob(z) - q.log_prob(z)


vaelab.register_model(
    "mog-vae",
    MixturePriorVAE,
    objective="elbo",
    description="VAE with a learned mixture-of-Gaussians prior (a plugin: docs/extending.md)",
    objectives=("iwae",),
    defaults={"objective.kl": "mc"},  # KL(q || mixture) has no closed form: Monte Carlo
    extra_keys=("components",),
)
