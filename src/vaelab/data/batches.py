"""In-memory batching: images stay uint8 on the device, a batch is an index slice of a seeded permutation.

Scaling and binarization happen on the whole batch in vectorised torch; no per-item Python runs in the
training loop. With several processes (DDP) each rank takes its own contiguous share of every global batch,
and under `batch_share` every random draw is made for the whole global batch from the shared generator and
this rank's rows are kept: the noise each datum sees is then the same as in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch

from vaelab.data.binarize import intensities, static_draw, to_float
from vaelab.data.sources import ImageSet


@dataclass(frozen=True)
class Share:
    """This process's rows of a global batch of `total` data (one rank of several)."""

    rows: slice
    total: int


_SHARE: ContextVar[Share | None] = ContextVar("vaelab_batch_share", default=None)


@contextmanager
def batch_share(share: Share | None) -> Iterator[None]:
    """Within the block, `shared_draw` makes draws for the global batch and keeps `share.rows`."""
    token = _SHARE.set(share)
    try:
        yield
    finally:
        _SHARE.reset(token)


def shared_draw(
    draw: Callable[..., torch.Tensor],
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    like: torch.Tensor,
    dim: int = 0,
) -> torch.Tensor:
    """`draw(shape, generator=..., device=..., dtype=...)` (torch.rand, torch.randn), where `shape[dim]` is
    the batch: under `batch_share` the draw covers the global batch and this share's rows are returned."""
    share = _SHARE.get()
    kw = {"generator": generator, "device": like.device, "dtype": like.dtype}
    if share is None or shape[dim] == share.total:
        return draw(shape, **kw)
    full = (*shape[:dim], share.total, *shape[dim + 1 :])
    return draw(full, **kw).narrow(dim, share.rows.start, share.rows.stop - share.rows.start)


@dataclass
class Prepared:
    """A split on its device, ready for batching: uint8 images, labels, and how to turn them into floats."""

    images: torch.Tensor
    labels: torch.Tensor | None
    mode: str
    binary: bool
    name: str = ""
    table: Any = None  # a table's columns (`vaelab.data.tables.TableSchema`) when the rows are a table's

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """One datum's shape (C, H, W)."""
        return tuple(self.images.shape[1:])

    def batch(self, index: torch.Tensor | slice, generator: torch.Generator | None = None) -> torch.Tensor:
        """The float32 batch at `index` (a fresh Bernoulli draw when dynamic).

        A dynamic draw is 1[u < p] with u ~ U(0, 1) from `generator` (the same bits torch.bernoulli gives on
        the CPU, and cheaper); `shared_draw` makes it the same per datum in one process or split over ranks.
        """
        images = self.images[index] if isinstance(index, slice) else self.images.index_select(0, index)
        if self.mode != "dynamic" or self.binary:
            return to_float(images, self.mode, generator, self.binary)
        p = intensities(images)
        u = shared_draw(torch.rand, tuple(p.shape), generator, p)
        return torch.lt(u, p, out=u)  # 1.0 where u < p, written over u: no extra pass or allocation

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
    return Prepared(images, labels, mode, binary, split.name, split.table)


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
