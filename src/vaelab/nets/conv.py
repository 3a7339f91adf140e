"""Convolutional bodies (DCGAN-style stride-2 stacks) for 28x28 and 64x64 images, sized by channel lists."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vaelab.errors import ConfigError
from vaelab.nets.mlp import activation


def default_channels(size: int) -> tuple[int, ...]:
    """Channel widths chosen by image size: two stride-2 layers for 28x28, four for 64x64.

    Args:
        size: the image's height.
    """
    if size % 4 == 0 and size <= 32:
        return (32, 64)
    return (32, 32, 64, 64)


def _check(shape: tuple[int, int, int], channels: Sequence[int]) -> tuple[int, int]:
    _, h, w = shape
    k = 2 ** len(channels)
    if h % k or w % k:
        raise ConfigError(
            f"a conv body with {len(channels)} stride-2 layers needs sides divisible by {k}, got {h}x{w}"
        )
    return h // k, w // k


class ConvEncoder(nn.Module):
    """x [B, C, H, W] -> features [B, hidden]: stride-2 4x4 convolutions, then one linear layer."""

    def __init__(
        self, shape: tuple[int, int, int], channels: Sequence[int], hidden: int, act: str = "relu"
    ) -> None:
        super().__init__()
        channels = tuple(channels) or default_channels(shape[1])
        fh, fw = _check(shape, channels)
        layers: list[nn.Module] = []
        width = shape[0]
        for c in channels:
            layers += [nn.Conv2d(width, c, 4, stride=2, padding=1), activation(act)]
            width = c
        layers += [nn.Flatten(), nn.Linear(width * fh * fw, hidden), activation(act)]
        self.net = nn.Sequential(*layers)
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """z [N, D] -> decoder output [N, factor*C, H, W]: a linear layer, then stride-2 transposed convolutions."""

    def __init__(
        self,
        latent_dim: int,
        shape: tuple[int, int, int],
        channels: Sequence[int],
        hidden: int,
        factor: int = 1,
        act: str = "relu",
    ) -> None:
        super().__init__()
        channels = tuple(channels) or default_channels(shape[1])
        fh, fw = _check(shape, channels)
        rev = tuple(reversed(channels))
        self.start = (rev[0], fh, fw)
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, hidden),
            activation(act),
            nn.Linear(hidden, rev[0] * fh * fw),
            activation(act),
            nn.Unflatten(1, self.start),
        ]
        for i, c in enumerate(rev):
            last = i == len(rev) - 1
            out = factor * shape[0] if last else rev[i + 1]
            layers.append(nn.ConvTranspose2d(c, out, 4, stride=2, padding=1))
            if not last:
                layers.append(activation(act))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
