"""Denoising training: corrupt the encoder's input, keep the clean image as the target.

Gaussian noise (x + sigma * eps, clipped to [0, 1]) or masking noise (each pixel set to 0 with probability p,
as in Vincent et al. 2008's denoising autoencoders). With q(z | x~) for a corrupted x~, the ELBO with a clean
target (Im et al. 2017) is still a lower bound on log p(x); corruption is a training device only: in eval
mode (every evaluation) the encoder sees the clean image. Draws come from `shared_draw`, so a datum's noise is
the same in one process and split over ranks. Each kind is one entry of `NOISES` (`objective.noise`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from vaelab.config import ObjectiveConfig
from vaelab.data.batches import shared_draw
from vaelab.errors import ConfigError
from vaelab.registry import Registry


class Noise(NamedTuple):
    """A kind of corruption: fn(x, level, generator) -> x~, which levels fit it, and the error otherwise."""

    corrupt: Callable[[torch.Tensor, float, torch.Generator | None], torch.Tensor]
    fits: Callable[[float], bool]
    needs: str  # formatted with the level


def _gaussian(x: torch.Tensor, level: float, generator: torch.Generator | None) -> torch.Tensor:
    return (x + level * shared_draw(torch.randn, tuple(x.shape), generator, x)).clamp(0.0, 1.0)


def _masking(x: torch.Tensor, level: float, generator: torch.Generator | None) -> torch.Tensor:
    return x * (shared_draw(torch.rand, tuple(x.shape), generator, x) >= level)


NOISES: Registry[Noise] = Registry(
    "noise",
    {
        "none": Noise(lambda x, level, generator: x, lambda level: True, ""),
        "gaussian": Noise(
            _gaussian,
            lambda level: level > 0,
            "gaussian noise needs objective.noise_level (sigma) > 0, got {}",
        ),
        "masking": Noise(
            _masking,
            lambda level: 0 < level < 1,
            "masking noise needs objective.noise_level (masked share) in (0, 1), got {}",
        ),
    },
)


def check_noise(kind: str, level: float) -> None:
    """A ConfigError unless `kind` is known and `level` fits it.

    Args:
        kind: a key of NOISES.
        level: sigma (gaussian) or the masked share (masking).
    """
    noise = NOISES.lookup(kind)
    if not noise.fits(level):
        raise ConfigError(noise.needs.format(level))


def parse_noise(text: str) -> tuple[str, float]:
    """'gaussian:0.3' or 'masking:0.5' -> (kind, level), checked.

    Args:
        text: KIND:LEVEL, as the --noise flag takes it.
    """
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
    """A corrupted copy of the batch x [B, ...] (x itself for 'none').

    Args:
        x: the batch.
        kind: a key of NOISES.
        level: sigma (gaussian) or the masked share (masking).
        generator: the random stream of the noise.
    """
    check_noise(kind, level)
    return NOISES[kind].corrupt(x, level, generator)


def encoder_input(
    model: nn.Module, x: torch.Tensor, cfg: ObjectiveConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """What the encoder sees: the corrupted batch while training with noise, else x.

    Args:
        model: the model (its `training` flag: evaluation never corrupts).
        x: the batch.
        cfg: the objective's settings (noise, noise_level).
        generator: the random stream of the noise.
    """
    if cfg.noise == "none" or not model.training:
        return x
    return corrupt(x, cfg.noise, cfg.noise_level, generator)
