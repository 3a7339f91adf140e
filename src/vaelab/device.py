"""Devices: resolve a --device string, refusing clearly what this machine does not have."""

from __future__ import annotations

import torch

from vaelab.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`cpu`, `cuda`, `cuda:N`, `mps` or `auto` (CUDA when available, else CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{name}' is not available: this torch sees no CUDA device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device '{name}' is not available: {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device '{name}' is not available here")
    return dev
