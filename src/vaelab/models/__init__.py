"""Latent-variable models, their written contract (`protocol`) and their registry.

The registry and the model classes load on first use (PEP 562), so that `vaelab.models.protocol`, which the
objectives and the baselines import, never pulls the registry (and through it the baselines) in half-way.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Autoencoder": "vaelab.models.autoencoder",
    "VAE": "vaelab.models.vae",
    "MODELS": "vaelab.models.registry",
    "ModelSpec": "vaelab.models.registry",
    "build_model": "vaelab.models.registry",
    "get_spec": "vaelab.models.registry",
    "register_model": "vaelab.models.registry",
}

__all__ = ["MODELS", "VAE", "Autoencoder", "ModelSpec", "build_model", "get_spec", "register_model"]


def __getattr__(name: str) -> Any:
    """Import the module that defines `name` when `vaelab.models.<name>` is first asked for."""
    if name not in _WHERE:
        raise AttributeError(f"module 'vaelab.models' has no attribute {name!r}")
    value = vars(importlib.import_module(_WHERE[name]))[name]
    globals()[name] = value
    return value
