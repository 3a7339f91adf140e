"""Evaluation over ranks: blocks of data with their own seeds give every datum the estimate one process gives."""

from __future__ import annotations

import json

import pytest
import torch

from vaelab.cli import main
from vaelab.evaluate import blocks as blocks_module
from vaelab.evaluate.blocks import MIN_BLOCKS, block_seed, blocks, min_block_size, my_blocks
from vaelab.evaluate.loglik import importance_sampling
from vaelab.train import distributed, train


@pytest.mark.parametrize("n", [0, 1, 5, 16, 17, 100, 1001])
@pytest.mark.parametrize("size", [1, 4, 100, 5000])
def test_blocks_cover_the_data_in_order(n, size):
    bl = blocks(n, size)
    covered = [i for b in bl for i in range(n)[b]]
    assert covered == list(range(n))
    assert all(0 < b.stop - b.start <= size for b in bl)
    assert len(bl) >= min(n, MIN_BLOCKS)
    lengths = [b.stop - b.start for b in bl]
    assert not lengths or max(lengths) - min(lengths) <= 1


def test_blocks_are_not_cut_below_their_minimum_size():
    assert len(blocks(100, 111, min_size=min_block_size(18))) == 4  # 16 blocks of 6 would be slower
    assert len(blocks(1000, 111, min_size=min_block_size(18))) == 16
    assert len(blocks(10, 100, min_size=50)) == 1
    assert min_block_size(18) == 23 and min_block_size(1000) == 1


def test_block_seeds_are_fixed_and_distinct():
    seeds = {block_seed(0, "importance", i) for i in range(2000)}
    assert len(seeds) == 2000 and all(0 <= s < 2**63 for s in seeds)
    assert block_seed(0, "importance", 7) == block_seed(0, "importance", 7)
    assert block_seed(0, "importance", 7) != block_seed(1, "importance", 7)
    assert block_seed(0, "importance", 7) != block_seed(0, "ais", 7)


def test_ranks_take_contiguous_shares_of_the_blocks(monkeypatch):
    bl = blocks(50, 4)
    shares = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        shares.append(my_blocks(bl))
    assert [i for share in shares for i, _ in share] == list(range(len(bl)))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_shares_of_two_ranks_put_together_equal_one_process(ppca, monkeypatch):
    """Each rank's own blocks (the gather replaced by the identity) concatenate to the one-process result."""
    m, x = ppca
    one = importance_sampling(m, x, 300, chunk=64, max_elements=640, seed=5)
    monkeypatch.setattr(blocks_module.distributed, "gather_cat", lambda t: t)
    parts = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        parts.append(importance_sampling(m, x, 300, chunk=64, max_elements=640, seed=5))
    assert 0 < len(parts[0].log_px) < len(x)
    for key in ("log_px", "ess", "elbo"):
        joined = torch.cat([getattr(p, key) for p in parts])
        assert torch.equal(joined, getattr(one, key)), key
    for k in one.curve:
        assert torch.equal(torch.cat([p.curve[k] for p in parts]), one.curve[k])


def test_seeded_estimates_repeat_and_seeds_matter(ppca):
    m, x = ppca
    a = importance_sampling(m, x, 50, seed=1)
    assert torch.equal(a.log_px, importance_sampling(m, x, 50, seed=1).log_px)
    assert not torch.equal(a.log_px, importance_sampling(m, x, 50, seed=2).log_px)
    with pytest.raises(distributed.ConfigError, match="a generator or a seed, not both"):
        importance_sampling(m, x, 50, torch.Generator(), seed=1)


# --- real process groups: two gloo ranks spawned by torch elastic ----------------------------------------


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    from vaelab_testing import small_config

    root = tmp_path_factory.mktemp("dist-eval")
    train(small_config(**{"train.epochs": 1}), out=root / "vae")
    return root / "vae"


# 240 images and C=3: three AIS blocks of 80 (the fewest that keep 400 rows per call), two ranks share them
# 2 + 1; BDMC on 170 simulated images: two blocks; IS: 16 blocks.
EVAL = ["--importance", "64", "--ais", "6", "--chains", "3", "--leapfrog", "2", "--bdmc", "170"]


@pytest.mark.slow
def test_two_processes_give_every_image_the_one_process_numbers(vae_run, tmp_path, capsys):
    common = [*EVAL, "--decomposition", "--limit", "240", "--seed", "4", "--threads", "1", "--quiet"]
    assert main(["eval", str(vae_run), *common, "--out", str(tmp_path / "one.json")]) == 0
    assert main(["eval", str(vae_run), *common, "--nproc", "2", "--out", str(tmp_path / "two.json")]) == 0
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert len(blocks(240, 400, min_size=min_block_size(3 + 2))) == 3  # AIS work on both ranks
    assert len(blocks(170, 400, min_size=min_block_size(3 + 2))) == 2  # BDMC work on both ranks
    assert two["processes"] == 2 and "processes" not in one
    assert len(two["importance"]["per_datum"]) == 240 == two["num_images"]
    close = {"rtol": 1e-12, "atol": 1e-12}
    for part in ("importance", "ais"):
        torch.testing.assert_close(
            torch.tensor(two[part]["per_datum"]), torch.tensor(one[part]["per_datum"]), **close
        )
    for part, keys in {
        "elbo": ("estimate", "stderr"),
        "importance": ("log_px", "stderr", "ess_mean", "ess_min"),
        "ais": ("log_px", "chain_spread", "acceptance", "final_step_size"),
        "bdmc": ("lower", "upper", "gap"),
        "decomposition": ("rec", "kl", "gap", "mutual_information"),
    }.items():
        for k in keys:
            assert two[part][k] == pytest.approx(one[part][k], rel=1e-12, abs=1e-12), (part, k)
    for k, v in one["importance"]["iwae_curve"].items():
        assert two["importance"]["iwae_curve"][k] == pytest.approx(v, rel=1e-12, abs=1e-12), k


@pytest.mark.slow
def test_more_processes_than_images_is_one_line(vae_run, tmp_path, capsys, one_line_error):
    code = main(
        ["eval", str(vae_run), "--limit", "1", "--nproc", "2", "--quiet", "--out", str(tmp_path / "e")]
    )
    one_line_error(capsys, code, "rank 0/2", "2 processes but only 1 test image(s) to evaluate")
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--nproc", "0"], "--nproc must be >= 1, got 0"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
    ],
)
def test_bad_process_settings(vae_run, capsys, one_line_error, extra, needle):
    one_line_error(capsys, main(["eval", str(vae_run), "--quiet", *extra]), needle)


def test_nproc_under_torchrun_is_refused(vae_run, capsys, one_line_error, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    one_line_error(
        capsys, main(["eval", str(vae_run), "--nproc", "2", "--quiet"]), "under torchrun leave it out"
    )
