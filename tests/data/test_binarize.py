"""Binarization: static is one fixed draw, dynamic is fresh each batch, and frequencies match intensities."""

from __future__ import annotations

import torch

from vaelab.data.batches import epoch_batches, prepare
from vaelab.data.binarize import static_draw, to_float
from vaelab.data.sources import ImageSet


def _images(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 6, 6), generator=g, dtype=torch.uint8)


def test_static_is_the_same_every_epoch():
    split = ImageSet(_images(), None, "x")
    a = prepare(split, "static", "cpu", seed=5, train=True)
    b = prepare(split, "static", "cpu", seed=5, train=True)
    g = torch.Generator().manual_seed(0)
    first = a.batch(slice(0, 50), g)
    second = a.batch(slice(0, 50), g)
    assert torch.equal(first, second) and torch.equal(first, b.batch(slice(0, 50), g))
    assert set(first.unique().tolist()) <= {0.0, 1.0}


def test_dynamic_is_fresh_each_batch_and_reproducible():
    split = ImageSet(_images(), None, "x")
    d = prepare(split, "dynamic", "cpu", seed=0, train=True)
    g = torch.Generator().manual_seed(1)
    x1, x2 = d.batch(slice(0, 50), g), d.batch(slice(0, 50), g)
    assert not torch.equal(x1, x2)
    g2 = torch.Generator().manual_seed(1)
    assert torch.equal(d.batch(slice(0, 50), g2), x1)


def test_dynamic_evaluation_split_is_one_fixed_draw():
    """An evaluation split of dynamically binarized data is one Bernoulli draw seeded by prepare's seed
    (the same bits as static_draw with it), not a threshold, and another seed draws other bits."""
    split = ImageSet(_images(), None, "x")
    e = prepare(split, "dynamic", "cpu", seed=7, train=False)
    assert e.binary and set(e.images.unique().tolist()) <= {0, 1}
    assert torch.equal(e.images, static_draw(split.images, 7))
    assert torch.equal(e.batch(slice(0, 50)), e.images[:50].float())  # no fresh draw per batch
    assert not torch.equal(e.images, static_draw(split.images, 8))


def test_pixel_frequencies_match_intensities():
    """Over R draws a pixel of intensity v/255 is on with frequency v/255, within 4 standard errors."""
    levels = torch.tensor([0, 1, 30, 128, 200, 254, 255], dtype=torch.uint8)
    batch = levels.view(1, 1, 1, -1)
    reps = 20000
    g = torch.Generator().manual_seed(3)
    draws = to_float(batch.expand(reps, 1, 1, -1).contiguous(), "dynamic", g)
    freq = draws.mean(0).flatten().double()
    p = levels.double() / 255
    se = torch.sqrt(p * (1 - p) / reps).clamp_min(1e-12)
    assert torch.all((freq - p).abs() <= 4 * se + 1e-12), (freq, p)
    static = static_draw(batch.expand(reps, 1, 1, -1).contiguous(), seed=4).double().mean(0).flatten()
    assert torch.all((static - p).abs() <= 4 * se + 1e-12)


def test_none_keeps_intensities():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3)
    assert torch.allclose(to_float(x, "none", None), torch.tensor([0.0, 0.2, 1.0]).view(1, 1, 1, 3))


def test_epoch_batches_cover_each_index_once_and_shard_by_rank():
    """An epoch is torch.randperm(n) from the caller's generator cut into batches (the last short one kept);
    each rank takes its half of every global batch of the same permutation, and orders differ by seed and
    from one epoch to the next."""
    g = torch.Generator().manual_seed(0)
    batches = epoch_batches(103, 10, g)
    assert sorted(torch.cat(batches).tolist()) == list(range(103))
    perm = torch.randperm(103, generator=torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert torch.equal(torch.cat(batches), perm)
    next_epoch = torch.cat(epoch_batches(103, 10, g))
    other_seed = torch.cat(epoch_batches(103, 10, torch.Generator().manual_seed(1)))
    assert not torch.equal(next_epoch, perm) and not torch.equal(other_seed, perm)
    assert sorted(next_epoch.tolist()) == sorted(other_seed.tolist()) == list(range(103))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    r0 = epoch_batches(100, 20, g1, rank=0, world_size=2)
    r1 = epoch_batches(100, 20, g2, rank=1, world_size=2)
    assert all(len(a) == len(b) == 10 for a, b in zip(r0, r1))
    assert not set(torch.cat(r0).tolist()) & set(torch.cat(r1).tolist())
    assert set(torch.cat(r0 + r1).tolist()) == set(range(100))
    shared = torch.randperm(100, generator=torch.Generator().manual_seed(5)).view(5, 2, 10)
    assert all(
        torch.equal(a, shared[i, 0]) and torch.equal(b, shared[i, 1]) for i, (a, b) in enumerate(zip(r0, r1))
    )
