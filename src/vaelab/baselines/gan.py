"""A generative adversarial network (Goodfellow et al. 2014) with the non-saturating generator loss: the
implicit family, which draws samples and defines no likelihood.

The discriminator D minimises -log D(x) - log(1 - D(G(z))); the generator minimises -log D(G(z)) (the
non-saturating form, strong gradients early in training). Both come from one scalar loss so that the generic
training loop (one optimiser, one backward pass) trains a GAN like any other model: the discriminator's term
sees the fake images detached, and the generator's term runs the discriminator with detached parameters
(`torch.func.functional_call`), so each player's gradient is exactly the gradient of its own loss. The two
players therefore take simultaneous steps.

A GAN has no p(x). To put a number on it anyway, Wu et al. (2017) attach an observation model to the
generator, p(x|z) = N(x; G(z), sigma^2 I) with z ~ N(0, I), and estimate that model's log p(x) by annealed
importance sampling. `decode(z)` is that observation model (sigma = model.gaussian_sigma, fixed); with
model.likelihood=bernoulli it is Bernoulli(G(z)) instead, a mass function on binary images. Either way the
number is a log-likelihood of the generator plus stated noise, not of the GAN itself, and is labelled so.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal
from torch.func import functional_call

from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.data.batches import shared_draw
from vaelab.distributions.likelihoods import BinaryBernoulli
from vaelab.errors import ConfigError
from vaelab.nets.mlp import activation
from vaelab.objectives.registry import Step, register_objective
from vaelab.registry import Registry

BETAS = (0.5, 0.999)


class Observation(NamedTuple):
    """An observation model around the generator: p(x|z) from G's logits and sigma, and what it is in words."""

    decode: Callable[[torch.Tensor, float], Distribution]
    description: str  # formatted with sigma


def _gaussian(logits: torch.Tensor, sigma: float) -> Distribution:
    mean = torch.sigmoid(logits)
    return Independent(Normal(mean, torch.full_like(mean, sigma), validate_args=False), 3)


def _bernoulli(logits: torch.Tensor, sigma: float) -> Distribution:
    return Independent(BinaryBernoulli(logits=logits, validate_args=False), 3)


# model.likelihood -> the observation model `decode` states (for AIS and evaluation output).
OBSERVATIONS: Registry[Observation] = Registry(
    "observation model",
    {
        "gaussian": Observation(
            _gaussian,
            "observation model p(x|z) = N(x; G(z), {sigma:g}^2 I), z ~ N(0, I) (Wu et al. 2017): a "
            "log-density of the generator with stated Gaussian noise, not a likelihood of the GAN itself",
        ),
        "bernoulli": Observation(
            _bernoulli,
            "observation model p(x|z) = Bernoulli(G(z)), z ~ N(0, I): a log-likelihood of the generator with "
            "independent pixel noise, not of the GAN itself",
        ),
    },
)


def gan_channels(shape: tuple[int, int, int], channels: tuple[int, ...]) -> tuple[int, ...]:
    """The conv widths: as configured, else two stride-2 layers (64, 128) up to 32 pixels, four above.

    Args:
        shape: one image's shape (C, H, W).
        channels: the configured widths (model.conv_channels); empty: chosen by size.
    """
    channels = tuple(channels) or ((64, 128) if max(shape[1:]) <= 32 else (32, 64, 128, 256))
    k = 2 ** len(channels)
    if shape[1] % k or shape[2] % k:
        raise ConfigError(
            f"a conv GAN with {len(channels)} stride-2 layers needs sides divisible by {k}, got {shape[1]}x{shape[2]}"
        )
    return channels


def dcgan(cfg: ModelConfig, shape: tuple[int, int, int]) -> tuple[nn.Module, nn.Module]:
    """DCGAN (Radford et al. 2016): generator of batch-normalised stride-2 transposed convolutions, ReLU;
    discriminator of stride-2 convolutions, batch norm after the first, LeakyReLU(0.2).

    Args:
        cfg: the model config (conv_channels, latent_dim, activation).
        shape: one image's shape (C, H, W).
    """
    ch = gan_channels(shape, cfg.conv_channels)
    fh, fw = shape[1] // 2 ** len(ch), shape[2] // 2 ** len(ch)
    g: list[nn.Module] = [
        nn.Linear(cfg.latent_dim, ch[-1] * fh * fw),
        nn.BatchNorm1d(ch[-1] * fh * fw),
        activation(cfg.activation),
        nn.Unflatten(1, (ch[-1], fh, fw)),
    ]
    for a, b in itertools.pairwise(ch[::-1]):
        g += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.BatchNorm2d(b), activation(cfg.activation)]
    g.append(nn.ConvTranspose2d(ch[0], shape[0], 4, 2, 1))
    d: list[nn.Module] = [nn.Conv2d(shape[0], ch[0], 4, 2, 1), nn.LeakyReLU(0.2)]
    for a, b in itertools.pairwise(ch):
        d += [nn.Conv2d(a, b, 4, 2, 1), nn.BatchNorm2d(b), nn.LeakyReLU(0.2)]
    d += [nn.Flatten(), nn.Linear(ch[-1] * fh * fw, 1), nn.Flatten(0)]
    return nn.Sequential(*g), nn.Sequential(*d)


def mlp_gan(cfg: ModelConfig, shape: tuple[int, int, int]) -> tuple[nn.Module, nn.Module]:
    """MLP generator (widths model.hidden reversed, batch norm, the configured activation) and MLP
    discriminator (widths model.hidden, LeakyReLU(0.2)).

    Args:
        cfg: the model config (hidden, latent_dim, activation).
        shape: one image's shape (C, H, W).
    """
    if not cfg.hidden:
        raise ConfigError("an MLP GAN needs at least one hidden layer (model.hidden)")
    pixels = int(torch.Size(shape).numel())
    g: list[nn.Module] = []
    width = cfg.latent_dim
    for h in reversed(cfg.hidden):
        g += [nn.Linear(width, h), nn.BatchNorm1d(h), activation(cfg.activation)]
        width = h
    g += [nn.Linear(width, pixels), nn.Unflatten(1, tuple(shape))]
    d: list[nn.Module] = [nn.Flatten()]
    width = pixels
    for h in cfg.hidden:
        d += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
        width = h
    d += [nn.Linear(width, 1), nn.Flatten(0)]
    return nn.Sequential(*g), nn.Sequential(*d)


# model.body -> fn(cfg, shape) -> (generator, discriminator).
BODIES: Registry[Callable[[ModelConfig, tuple[int, int, int]], tuple[nn.Module, nn.Module]]] = Registry(
    "body", {"mlp": mlp_gan, "conv": dcgan}
)


class GAN(nn.Module):
    """Generator z -> G(z) in [0, 1] (a sigmoid of its logits) and discriminator x -> logit of P(x is real).

    Protocol: `prior()` is N(0, I); `decode(z)` is the stated observation model around G(z) (for AIS, as
    Wu et al. 2017); `generate(n, generator)` returns G(z) for z ~ p(z). It has no encoder, so no
    importance sampling, reconstructions or latent figures.
    """

    exact_likelihood = False

    def __init__(self, cfg: ModelConfig, shape: tuple[int, int, int]) -> None:
        super().__init__()
        if cfg.likelihood not in OBSERVATIONS:
            raise ConfigError(
                f"gan: the observation model for evaluation is model.likelihood gaussian (Wu et al. 2017, "
                f"sigma = model.gaussian_sigma) or bernoulli, not '{cfg.likelihood}'"
            )
        if not cfg.gaussian_sigma > 0:
            raise ConfigError(f"gan: model.gaussian_sigma must be > 0, got {cfg.gaussian_sigma}")
        if cfg.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {cfg.latent_dim}")
        self.shape = tuple(shape)
        self.latent_dim = cfg.latent_dim
        self.observation = cfg.likelihood
        self.sigma = float(cfg.gaussian_sigma)
        self.generator_net, self.discriminator = BODIES.lookup(cfg.body)(cfg, self.shape)
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def param_groups(self) -> list[dict]:
        """The optimiser's parameter groups (the training loop asks for them): both players with Adam betas
        (0.5, 0.999) as in DCGAN (Radford et al. 2016); with the default 0.9 the discriminator runs away."""
        return [
            {"params": list(self.discriminator.parameters()), "betas": BETAS},
            {"params": list(self.generator_net.parameters()), "betas": BETAS},
        ]

    def describe_observation(self) -> str:
        """What `decode` is, in words, for evaluation output."""
        return OBSERVATIONS[self.observation].description.format(sigma=self.sigma)

    def prior(self) -> Distribution:
        """p(z) = N(0, I), event shape (D,)."""
        zero = self._zero.expand(self.latent_dim)
        return Independent(Normal(zero, torch.ones_like(zero)), 1)

    def generator_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The generator's pre-sigmoid output for z of any leading shape [..., D] -> [..., C, H, W].

        Args:
            z: latent codes [..., D].
        """
        lead = z.shape[:-1]
        out = self.generator_net(z.reshape(-1, z.shape[-1]))
        return out.view(*lead, *out.shape[1:])

    def images(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) in [0, 1].

        Args:
            z: latent codes [..., D].
        """
        return torch.sigmoid(self.generator_logits(z))

    def decode(self, z: torch.Tensor) -> Distribution:
        """The observation model around G(z): batch z.shape[:-1], event one image's shape.

        Args:
            z: latent codes [..., D].
        """
        return OBSERVATIONS[self.observation].decode(self.generator_logits(z), self.sigma)

    @torch.no_grad()
    def generate(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples G(z) [n, C, H, W] in [0, 1], z ~ N(0, I) drawn with `generator`.

        Args:
            n: how many images.
            generator: the random stream of z.
        """
        z = torch.randn(n, self.latent_dim, generator=generator, device=self._zero.device)
        return self.images(z)


def gan_losses(model: GAN, x: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-datum losses [B] of both players, and D's probabilities on real and fake images.

    d_loss = -log D(x) - log(1 - D(G(z))) with G(z) detached: its gradient reaches only the discriminator.
    g_loss = -log D(G(z)) with D's parameters detached: its gradient reaches only the generator.

    Args:
        model: the GAN.
        x: real images [B, C, H, W] in [0, 1].
        z: latent codes [B, D] for the fake images.
    """
    fake = model.images(z)
    real_logit = model.discriminator(x)
    fake_logit = model.discriminator(fake.detach())
    frozen = {k: v.detach() for k, v in model.discriminator.named_parameters()}
    g_logit = functional_call(model.discriminator, frozen, (fake,))
    return {
        "d_loss": F.softplus(-real_logit) + F.softplus(fake_logit),
        "g_loss": F.softplus(-g_logit),
        "d_real": torch.sigmoid(real_logit),
        "d_fake": torch.sigmoid(fake_logit),
    }


@register_objective("gan")
def gan_objective(
    model: nn.Module, x: torch.Tensor, cfg: ObjectiveConfig, beta: float, generator: torch.Generator | None
) -> Step:
    """One scalar whose gradient is each player's own loss gradient (see the module docstring).

    Args:
        model: the GAN.
        x: real images [B, C, H, W].
        cfg: the objective's settings (none apply).
        beta: unused (no KL term).
        generator: the random stream of the latent codes.
    """
    z = shared_draw(torch.randn, (len(x), model.latent_dim), generator, x)
    s = gan_losses(model, x, z)
    return Step((s["d_loss"] + s["g_loss"]).mean(), s)
