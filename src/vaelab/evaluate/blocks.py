"""Evaluation work in blocks of data whose random numbers are their own: the same per-datum estimates in one
process or split over the ranks of a process group.

The evaluated images are cut into contiguous blocks whose sizes depend only on the number of images and the
estimator's settings (never on the number of processes). Block i draws from a generator seeded by
(seed, estimator, i). Each rank runs a contiguous share of the blocks (`vaelab.train.distributed.shard`) and
`gather_cat` puts the per-datum results back in data order, so `vaelab eval --nproc N` (or under torchrun)
gives what one process gives, datum by datum. Outside a process group one rank runs every block.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import torch

from vaelab.train import distributed

MIN_BLOCKS = 16  # at least this many blocks (when there are enough data): enough to share among ranks
MIN_ROWS = 400  # ...but no block so small that its decoder calls see fewer rows than this (slower per image)


def blocks(n: int, size: int, min_blocks: int = MIN_BLOCKS, min_size: int = 1) -> list[slice]:
    """Contiguous blocks covering range(n), at most `size` long (sizes differ by at most 1).

    There are at least min(min_blocks, n // min_size) of them, so that ranks can share the work without
    cutting it into blocks of fewer than `min_size` data (small decoder calls cost more per image).

    Args:
        n: how many data.
        size: the most data in a block.
        min_blocks: at least this many blocks, when there are data enough.
        min_size: but no block of fewer data than this (when it can be helped).
    """
    if n <= 0:
        return []
    count = max(math.ceil(n / max(1, size)), min(min_blocks, n // max(1, min_size)), 1)
    q, r = divmod(n, count)
    out, start = [], 0
    for i in range(count):
        stop = start + q + (1 if i < r else 0)
        out.append(slice(start, stop))
        start = stop
    return out


def min_block_size(rows_per_datum: int) -> int:
    """The fewest data per block that keep a decoder call at MIN_ROWS rows or more.

    Args:
        rows_per_datum: decoder rows each datum contributes (samples, chains + pilots, ...).
    """
    return max(1, math.ceil(MIN_ROWS / max(1, rows_per_datum)))


def block_seed(seed: int, stream: str, index: int) -> int:
    """A 63-bit seed for block `index` of estimator `stream`, derived from the user's `seed`.

    Args:
        seed: the evaluation's seed.
        stream: the estimator ("importance", "ais", ...).
        index: the block.
    """
    digest = hashlib.blake2b(f"vaelab/{seed}/{stream}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def block_generator(seed: int, stream: str, index: int, device: torch.device | str) -> torch.Generator:
    """The generator of block `index` of estimator `stream` on `device`.

    Args:
        seed: the evaluation's seed.
        stream: the estimator ("importance", "ais", ...).
        index: the block.
        device: where the generator draws.
    """
    return torch.Generator(device=device).manual_seed(block_seed(seed, stream, index))


def my_blocks(all_blocks: list[slice]) -> list[tuple[int, slice]]:
    """This rank's contiguous share of `all_blocks`, each with its index (all of them outside a process group).

    Args:
        all_blocks: every block of the evaluation, in order.
    """
    return list(enumerate(all_blocks))[distributed.shard(len(all_blocks))]


def run_blocks(
    all_blocks: list[slice],
    fn: Callable[[int, slice], dict[str, torch.Tensor]],
    keys: tuple[str, ...],
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """`fn(index, rows)` on this rank's blocks; each of `keys` (per-datum 1-D values) gathered in data order.

    Returns float64 CPU tensors covering every block, on every rank.

    Args:
        all_blocks: every block of the evaluation, in order.
        fn: the work of one block, returning per-datum values by key.
        keys: the keys of `fn`'s result to gather.
        device: where the gather happens (the process group's device).
    """
    parts = [fn(i, rows) for i, rows in my_blocks(all_blocks)]
    out = {}
    for k in keys:
        local = (
            torch.cat([p[k].to(device=device, dtype=torch.float64) for p in parts])
            if parts
            else torch.empty(0, dtype=torch.float64, device=device)
        )
        out[k] = distributed.gather_cat(local).cpu()
    return out
