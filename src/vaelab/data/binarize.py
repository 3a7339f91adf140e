"""Binarization of grey images, done on the fly in vectorised torch.

`dynamic` draws fresh Bernoulli pixels for every batch (the IWAE paper's protocol), `static` draws once
with a seed, `none` keeps intensities in [0, 1]. Evaluation of a binarized model always uses one
seeded draw, so a test number is reproducible and says which draw it used. Data held as float32 (arrays in
[0, 1], `vaelab.data.arrays`; a table's rows) are intensities already: they are not divided by 255.
"""

from __future__ import annotations

import torch

from vaelab.registry import Registry

MODES: Registry[str] = Registry(
    "binarization",
    {
        "dynamic": "a fresh Bernoulli draw per batch",
        "static": "one seeded draw",
        "none": "grey levels in [0, 1]",
    },
)


def check_mode(mode: str) -> str:
    """Return `mode` if valid, else a ConfigError listing the choices."""
    MODES.check(mode)
    return mode


def static_draw(images: torch.Tensor, seed: int, chunk: int = 8192) -> torch.Tensor:
    """One seeded Bernoulli draw of uint8 intensities, returned as uint8 0/1 (chunked to bound memory)."""
    g = torch.Generator(device=images.device).manual_seed(seed)
    out = torch.empty_like(images)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk]
        out[start : start + chunk] = torch.bernoulli(intensities(block), generator=g).to(images.dtype)
    return out


def intensities(batch: torch.Tensor) -> torch.Tensor:
    """A batch as float32 intensities in [0, 1]: uint8 levels / 255, float32 data as they are (a copy)."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    return batch.float().clone() if batch.dtype == torch.float32 else batch.float()


def to_float(
    batch: torch.Tensor, mode: str, generator: torch.Generator | None, binary: bool = False
) -> torch.Tensor:
    """A batch as float32: a fresh draw (dynamic), 0/1 as stored (binary), or intensities (`intensities`)."""
    if binary:
        return batch.float()
    x = intensities(batch)
    if mode == "dynamic":
        return torch.bernoulli(x, generator=generator)
    return x
