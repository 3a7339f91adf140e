"""Devices: resolve a --device string, refusing clearly what this machine does not have; tune the CPU runtime."""

from __future__ import annotations

import contextlib
import ctypes
import platform
import sys
from collections.abc import Iterator

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


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers in glibc's malloc.h
_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Keep freed heap memory in the process instead of handing it back to the OS (glibc's mallopt).

    By default glibc returns each multi-megabyte tensor buffer to the OS when it is freed, and the next one
    page-faults it back: a third of the CPU time of importance sampling went to those faults (torch's CPU
    guide suggests jemalloc for the same reason; this needs no preload). Process-wide; the resident size stays
    at its high-water mark. Idempotent; True where it took effect.
    """
    global _kept
    if _kept is None:
        _kept = False
        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL("libc.so.6")
            except OSError:
                return False
            _kept = bool(
                libc.mallopt(_M_MMAP_THRESHOLD, 256 << 20) and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
            )
    return _kept


def flushing_denormals() -> bool:
    """Whether this thread flushes denormal floats to zero now."""
    return float(torch.tensor([torch.finfo(torch.float32).tiny]) / 2) == 0.0


@contextlib.contextmanager
def flush_denormals() -> Iterator[bool]:
    """Denormal floats taken and given as zero inside the block (torch.set_flush_denormal), as before after it.

    Adam's first moment of a weight whose gradient is always 0 (an MNIST border pixel) decays through the
    denormal range, where each multiply is ten times slower: a fifth of a 784-400-20 VAE's first-layer
    moments were denormal after 5 epochs. Values below 1.2e-38 change no result of a model here. Yields
    whether the CPU can flush at all.
    """
    was = flushing_denormals()
    on = torch.set_flush_denormal(True)
    try:
        yield on
    finally:
        if on and not was:
            torch.set_flush_denormal(False)


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 arithmetic is native on `device`: AVX512-BF16 or AMX on a CPU (else oneDNN emulates it,
    slower than fp32), `torch.cuda.is_bf16_supported()` on a GPU; other devices are assumed native."""
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, p, lambda: False)() for p in probes)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return True


def autocasting(device_type: str) -> bool:
    """Whether autocast is on for `device_type` ("cpu" or "cuda"), on torch before and after 2.4's API; False
    for any other device.

    Args:
        device_type: a torch.device's type.
    """
    if device_type not in ("cpu", "cuda"):
        return False
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """A block with autocast off on `device_type`: the precision-critical arithmetic (logits, mixture densities)
    inside a bf16 step; a no-op where autocast is not on (MPS, meta tensors).

    Args:
        device_type: a torch.device's type.
    """
    return (
        torch.autocast(device_type, enabled=False) if autocasting(device_type) else contextlib.nullcontext()
    )
