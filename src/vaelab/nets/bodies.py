"""The table of encoder/decoder bodies a model is built from (`model.body`): a name -> builder registry.

A builder takes the model config, one datum's shape (C, H, W) and the likelihood's `factor` (decoder channels
per data channel) and returns (encoder, decoder): the encoder maps x [B, C, H, W] to features [B, F] and has
`out_features` = F; the decoder maps z [N, D] (D = cfg.latent_dim) to the likelihood's input
[N, factor * C, H, W]. A new body is one builder and one `@BODIES.register(name)`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from vaelab.config import ModelConfig
from vaelab.nets.conv import ConvDecoder, ConvEncoder
from vaelab.nets.mlp import MLPDecoder, MLPEncoder
from vaelab.registry import Registry

BodyBuilder = Callable[[ModelConfig, tuple[int, int, int], int], tuple[nn.Module, nn.Module]]

BODIES: Registry[BodyBuilder] = Registry("body")


@BODIES.register("mlp")
def mlp_bodies(cfg: ModelConfig, shape: tuple[int, int, int], factor: int) -> tuple[nn.Module, nn.Module]:
    """MLP encoder of widths `cfg.hidden` and MLP decoder of the same widths reversed.

    Args:
        cfg: the model config (hidden, latent_dim, activation).
        shape: one datum's shape (C, H, W).
        factor: decoder output channels per data channel.
    """
    enc = MLPEncoder(shape, cfg.hidden, cfg.activation)
    dec = MLPDecoder(cfg.latent_dim, tuple(reversed(cfg.hidden)), shape, factor, cfg.activation)
    return enc, dec


@BODIES.register("conv")
def conv_bodies(cfg: ModelConfig, shape: tuple[int, int, int], factor: int) -> tuple[nn.Module, nn.Module]:
    """Stride-2 convolutional encoder and transposed-convolution decoder of channels `cfg.conv_channels`,
    with one dense layer of width `cfg.hidden[0]` (256 when hidden is empty).

    Args:
        cfg: the model config (conv_channels, hidden, latent_dim, activation).
        shape: one datum's shape (C, H, W).
        factor: decoder output channels per data channel.
    """
    width = cfg.hidden[0] if cfg.hidden else 256
    enc = ConvEncoder(shape, cfg.conv_channels, width, cfg.activation)
    dec = ConvDecoder(cfg.latent_dim, shape, cfg.conv_channels, width, factor, cfg.activation)
    return enc, dec


def make_bodies(cfg: ModelConfig, shape: tuple[int, int, int], factor: int) -> tuple[nn.Module, nn.Module]:
    """Encoder and decoder bodies of the kind `cfg.body` (a ConfigError naming the choices if unknown).

    Args:
        cfg: the model config; `cfg.body` picks the builder.
        shape: one datum's shape (C, H, W).
        factor: decoder output channels per data channel (the likelihood's `factor`).
    """
    return BODIES.lookup(cfg.body)(cfg, shape, factor)
