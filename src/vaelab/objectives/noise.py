"""Denoising training: corrupt the encoder's input, keep the clean image as the target.

Gaussian noise (x + sigma * eps, clipped to [0, 1]) or masking noise (each pixel set to 0 with probability p,
as in Vincent et al. 2008's denoising autoencoders). With q(z | x~) for a corrupted x~, the ELBO with a clean
target (Im et al. 2017) is still a lower bound on log p(x); corruption is a training device only: in eval
mode (every evaluation) the encoder sees the clean image. Draws come from `shared_draw`, so a datum's noise is
the same in one process and split over ranks.
"""

from __future__ import annotations

import torch
from torch import nn

from vaelab.config import ObjectiveConfig
from vaelab.data.batches import shared_draw
from vaelab.errors import ConfigError

NOISES = ("none", "gaussian", "masking")


def check_noise(kind: str, level: float) -> None:
    """A ConfigError unless `kind` is known and `level` fits it."""
    if kind not in NOISES:
        raise ConfigError(f"unknown noise '{kind}'; choose one of: {', '.join(NOISES)}")
    if kind == "gaussian" and not level > 0:
        raise ConfigError(f"gaussian noise needs objective.noise_level (sigma) > 0, got {level}")
    if kind == "masking" and not 0 < level < 1:
        raise ConfigError(f"masking noise needs objective.noise_level (masked share) in (0, 1), got {level}")


def parse_noise(text: str) -> tuple[str, float]:
    """'gaussian:0.3' or 'masking:0.5' -> (kind, level), checked."""
    kind, sep, level = text.partition(":")
    try:
        value = float(level) if sep else float("nan")
    except ValueError:
        value = float("nan")
    if not sep or value != value:
        raise ConfigError(f"--noise expects KIND:LEVEL such as gaussian:0.3 or masking:0.5, got '{text}'")
    check_noise(kind, value)
    return kind, value


def corrupt(x: torch.Tensor, kind: str, level: float, generator: torch.Generator | None) -> torch.Tensor:
    """A corrupted copy of the batch x [B, ...] (x itself for 'none')."""
    if kind == "none":
        return x
    check_noise(kind, level)
    if kind == "gaussian":
        return (x + level * shared_draw(torch.randn, tuple(x.shape), generator, x)).clamp(0.0, 1.0)
    keep = shared_draw(torch.rand, tuple(x.shape), generator, x) >= level
    return x * keep


def encoder_input(
    model: nn.Module, x: torch.Tensor, cfg: ObjectiveConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """What the encoder sees: the corrupted batch while training with noise, else x."""
    if cfg.noise == "none" or not model.training:
        return x
    return corrupt(x, cfg.noise, cfg.noise_level, generator)
