"""Multilayer perceptrons: the encoder and decoder bodies of Kingma & Welling (2014) and the IWAE paper."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.device import autocast_off, autocasting
from vaelab.errors import ConfigError
from vaelab.registry import Registry

# Gated linear units (Dauphin et al. 2017): a layer, not an elementwise function, so MLP bodies only.
GATED = "gated"

ACTIVATIONS: Registry[type[nn.Module]] = Registry(
    "activation",
    {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "elu": nn.ELU,
        "gelu": nn.GELU,
        "softplus": nn.Softplus,
        "leaky-relu": nn.LeakyReLU,
    },
    more=GATED,
)
MLP_ACTIVATIONS = (*ACTIVATIONS, GATED)


def activation(name: str) -> nn.Module:
    """The elementwise activation module called `name`; a ConfigError listing the choices if unknown.

    Args:
        name: a key of ACTIVATIONS ('gated' is a layer, for `mlp` only, and refused here).
    """
    if name == GATED:
        raise ConfigError(
            f"activation '{GATED}' (gated linear units) applies to MLP layers only; "
            f"choose one of: {', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS.lookup(name)()


class GatedDense(nn.Module):
    """h = (W x + b) * sigmoid(V x + c): the gated layer of the VampPrior and Exemplar VAE MLPs (Tomczak &
    Welling 2018), whose published 2x300 results use it; W and V are one Linear of twice the width."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.linear(x), dim=-1)


class Float32Linear(nn.Linear):
    """A linear layer computed in float32 even under bf16 autocast: the logits of a classifier whose
    probabilities weigh per-class bounds. In bf16 the ADGM's classifier logits turned its gradients around once
    they grew (cosine about -0.9 against fp32's; docs/semi-supervised-notes.md); the layer is a small part of a
    step's work. Its weights are an nn.Linear's, so checkpoints load either way."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind = x.device.type
        if not autocasting(kind):  # outside autocast: a plain linear layer
            return super().forward(x)
        with autocast_off(kind):
            return super().forward(x.to(self.weight.dtype))


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int | None,
    act: str = "relu",
    float32_out: bool = False,
) -> nn.Sequential:
    """Linear layers of widths `hidden`, each followed by `act` (or gated layers for `gated`); a final linear
    layer if out_features is set (a `Float32Linear` with `float32_out`: classifier logits).

    Args:
        in_features: the input width.
        hidden: the hidden layers' widths, in order.
        out_features: the final linear layer's width; None ends with the last hidden layer.
        act: an activation name, or 'gated' for gated linear units.
        float32_out: compute the final layer in float32 under autocast.
    """
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [GatedDense(width, h)] if act == GATED else [nn.Linear(width, h), activation(act)]
        width = h
    if out_features is not None:
        layers.append((Float32Linear if float32_out else nn.Linear)(width, out_features))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """x [B, C, H, W] -> features [B, hidden[-1]]."""

    def __init__(self, shape: tuple[int, int, int], hidden: Sequence[int], act: str = "relu") -> None:
        super().__init__()
        if not hidden:
            raise ConfigError("an MLP body needs at least one hidden layer (model.hidden)")
        self.net = mlp(int(torch.Size(shape).numel()), hidden, None, act)
        self.out_features = hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """z [N, D] -> decoder output [N, factor*C, H, W] (hidden widths mirrored by the caller)."""

    def __init__(
        self,
        latent_dim: int,
        hidden: Sequence[int],
        shape: tuple[int, int, int],
        factor: int = 1,
        act: str = "relu",
    ) -> None:
        super().__init__()
        c, h, w = shape
        self.out_shape = (factor * c, h, w)
        self.net = mlp(latent_dim, hidden, factor * c * h * w, act)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.out_shape)
