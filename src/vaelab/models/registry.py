"""The model registry: one table that the CLI, the trainer and `vaelab.load` share (no if-chains)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models.autoencoder import Autoencoder
from vaelab.models.linear import LinearGaussianVAE
from vaelab.models.vae import VAE


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model and which training objective it uses by default."""

    build: Callable[[ModelConfig, tuple[int, int, int]], nn.Module]
    objective: str
    description: str
    needs_labels: bool = False


MODELS: dict[str, ModelSpec] = {
    "vae": ModelSpec(
        VAE, "elbo", "VAE: Gaussian encoder, N(0, I) prior, chosen likelihood (Kingma & Welling 2014)"
    ),
    "autoencoder": ModelSpec(
        Autoencoder, "reconstruction", "deterministic autoencoder, the non-generative baseline"
    ),
    "linear-gaussian": ModelSpec(
        LinearGaussianVAE, "elbo", "probabilistic PCA with a linear encoder: log p(x) exact (for checking bounds)"
    ),
}


def register_model(name: str, spec: ModelSpec) -> None:
    """Add a model to the registry (used by model families defined elsewhere)."""
    MODELS[name] = spec


def get_spec(name: str) -> ModelSpec:
    """The registered spec of `name`; an error listing the choices if unknown."""
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(cfg: ModelConfig, shape: tuple[int, int, int]) -> nn.Module:
    """Build the model `cfg.name` for data of one-datum shape `shape` (C, H, W)."""
    return get_spec(cfg.name).build(cfg, tuple(shape))
