"""In-memory batching: images stay uint8 on the device, a batch is an index slice of a seeded permutation.

Scaling and binarization happen on the whole batch in vectorised torch; no per-item Python runs in the
training loop. With several processes (DDP) each rank takes its own contiguous share of every global batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from vaelab.data.binarize import static_draw, to_float
from vaelab.data.sources import ImageSet


@dataclass
class Prepared:
    """A split on its device, ready for batching: uint8 images, labels, and how to turn them into floats."""

    images: torch.Tensor
    labels: torch.Tensor | None
    mode: str
    binary: bool
    name: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """One datum's shape (C, H, W)."""
        return tuple(self.images.shape[1:])

    def batch(self, index: torch.Tensor | slice, generator: torch.Generator | None = None) -> torch.Tensor:
        """The float32 batch at `index` (a fresh Bernoulli draw when dynamic)."""
        return to_float(self.images[index], self.mode, generator, self.binary)

    def labels_at(self, index: torch.Tensor | slice) -> torch.Tensor | None:
        """The labels at `index`, if the split has labels."""
        return None if self.labels is None else self.labels[index]


def prepare(split: ImageSet, mode: str, device: torch.device | str, seed: int, train: bool) -> Prepared:
    """Move a split to `device`; static draws happen here (always for evaluation splits of binarized data)."""
    images = split.images.to(device)
    labels = None if split.labels is None else split.labels.to(device)
    binary = mode == "static" or (mode == "dynamic" and not train)
    if binary:
        images = static_draw(images, seed)
    return Prepared(images, labels, mode, binary, split.name)


def epoch_batches(
    n: int,
    batch_size: int,
    generator: torch.Generator | None,
    shuffle: bool = True,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> list[torch.Tensor]:
    """Index tensors of one epoch: global batches of a seeded permutation, each split evenly across ranks."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    out = []
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < batch_size and (drop_last or len(idx) < world_size):
            continue
        if world_size > 1:
            idx = idx.tensor_split(world_size)[rank]
        out.append(idx)
    return out


def iterate(data: Prepared, batch_size: int) -> Iterator[tuple[slice, torch.Tensor]]:
    """Sequential (slice, float batch) pairs over an evaluation split (already a fixed draw)."""
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        yield sl, data.batch(sl)
