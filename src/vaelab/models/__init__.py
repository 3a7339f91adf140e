"""Latent-variable models, their written contract (`protocol`) and their registry.

The registry and the model classes load on first use (PEP 562), so that `vaelab.models.protocol`, which the
objectives and the baselines import, never pulls the registry (and through it the baselines) in half-way.
"""

from vaelab.exports import lazy_exports

_REGISTRY = "vaelab.models.registry"
__all__ = ["MODELS", "VAE", "Autoencoder", "ModelSpec", "build_model", "get_spec", "register_model"]
__getattr__ = lazy_exports(
    __name__,
    {
        "Autoencoder": "vaelab.models.autoencoder",
        "VAE": "vaelab.models.vae",
        **dict.fromkeys(["MODELS", "ModelSpec", "build_model", "get_spec", "register_model"], _REGISTRY),
    },
)
