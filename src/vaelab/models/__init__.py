"""Latent-variable models and their registry."""

from vaelab.models.autoencoder import Autoencoder
from vaelab.models.registry import MODELS, ModelSpec, build_model, get_spec, register_model
from vaelab.models.vae import VAE

__all__ = ["MODELS", "VAE", "Autoencoder", "ModelSpec", "build_model", "get_spec", "register_model"]
