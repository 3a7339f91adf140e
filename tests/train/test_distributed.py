"""Data-parallel training: two gloo ranks equal one process, resume is exact, failures end the job in one line."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
import torch

from vaelab.cli import main
from vaelab.data.batches import Prepared, Share, batch_share, shared_draw
from vaelab.objectives import elbo as elbo_module
from vaelab.runs import RunDir
from vaelab.train import distributed, read_checkpoint, train
from vaelab.train.distributed import DistributedError, World
from vaelab.train.loop import check_world

CLI = ["--data", "digits", "--hidden", "32", "--latent-dim", "2", "--threads", "1", "--quiet", "--no-figures"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shards_partition_like_tensor_split():
    for n in (0, 1, 5, 64, 67):
        for size in (1, 2, 3, 7):
            expected = torch.arange(n).tensor_split(size)
            got = [torch.arange(n)[distributed.shard(n, World(r, size))] for r in range(size)]
            assert all(torch.equal(a, b) for a, b in zip(expected, got)), (n, size)


@pytest.mark.parametrize("draw, shape, dim", [(torch.rand, (10, 3), 0), (torch.randn, (4, 10, 2), 1)])
def test_a_share_draws_the_global_batch_and_keeps_its_rows(draw, shape, dim):
    like = torch.empty(0)
    whole = shared_draw(draw, shape, torch.Generator().manual_seed(5), like, dim)
    rows = slice(3, 7)
    local = (*shape[:dim], 4, *shape[dim + 1 :])
    with batch_share(Share(rows, shape[dim])):
        part = shared_draw(draw, local, torch.Generator().manual_seed(5), like, dim)
    assert torch.equal(part, whole.narrow(dim, 3, 4))


def test_dynamic_binarization_is_bernoulli_and_splits_over_ranks():
    images = torch.randint(
        0, 256, (12, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    data = Prepared(images, None, "dynamic", binary=False)
    idx = torch.arange(12)
    whole = data.batch(idx, torch.Generator().manual_seed(9))
    # the same bits torch.bernoulli draws from the same generator state
    assert torch.equal(
        whole, torch.bernoulli(images.float() / 255, generator=torch.Generator().manual_seed(9))
    )
    with batch_share(Share(slice(6, 12), 12)):
        part = data.batch(idx[6:], torch.Generator().manual_seed(9))
    assert torch.equal(part, whole[6:])


def test_world_checks(config_factory):
    cfg = config_factory(**{"train.batch_size": 64})
    check_world(cfg, World(0, 4), 100)
    with pytest.raises(distributed.ConfigError, match="world size 3 does not divide train.batch_size 64"):
        check_world(cfg, World(0, 3))
    with pytest.raises(distributed.ConfigError, match="4 processes but digits has only 3 training image"):
        check_world(cfg, World(0, 4), 3)


def test_nproc_that_does_not_divide_the_batch_is_one_line(tmp_path, capsys, one_line_error):
    code = main(["train", *CLI, "--batch-size", "64", "--nproc", "3", "--out", str(tmp_path / "r")])
    one_line_error(capsys, code, "world size 3 does not divide train.batch_size 64")
    assert not (tmp_path / "r").exists()


def test_missing_rendezvous_address_is_one_line(tmp_path, capsys, one_line_error, monkeypatch):
    for k in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    code = main(["train", *CLI, "--out", str(tmp_path / "r")])
    one_line_error(capsys, code, "rank 1/2", "MASTER_ADDR and MASTER_PORT not set", "torchrun")


@pytest.mark.slow
def test_rendezvous_that_never_completes_times_out(tmp_path, capsys, one_line_error, monkeypatch):
    port = free_port()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    began = time.monotonic()
    code = main(["train", *CLI, "--set", "train.dist_timeout=2", "--out", str(tmp_path / "r")])
    assert time.monotonic() - began < 30
    one_line_error(capsys, code, f"no rendezvous of 2 ranks at 127.0.0.1:{port} within 2 s")
    assert not torch.distributed.is_initialized()


# --- real process groups: two gloo ranks spawned by torch elastic (as torchrun --standalone does) ---------


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _whole_and_resumed(cfg, folder: str) -> dict:
    """In each rank: an uninterrupted run, and one stopped after epoch 1 and resumed (one process group)."""
    distributed.start(torch.device("cpu"), 60)
    try:
        r = distributed.world().rank
        helpers = {
            "gathered": distributed.gather_cat(torch.arange(r + 2) + 10 * r),
            "summed": distributed.all_reduce_sum(torch.tensor([r + 1.0, 10.0])),
            "broadcast": distributed.broadcast_object({"from": r}),
        }
        whole = train(cfg, out=f"{folder}/whole")
        train(cfg.replace(**{"train.epochs": 1}), out=f"{folder}/parts")
        resumed = train(cfg, out=f"{folder}/parts", resume=True, explicit={"train.epochs"})
    finally:
        distributed.stop()
    return {
        "whole": _state(whole.model),
        "history": whole.history,
        "resumed": _state(resumed.model),
        **helpers,
    }


@pytest.mark.slow
def test_two_ranks_equal_one_process_and_resume_exactly(tmp_path, config_factory):
    cfg = config_factory(
        **{"train.epochs": 2, "data.train_limit": 640, "model.hidden": (64,), "model.latent_dim": 4}
    )
    one = train(cfg)
    results = distributed.launch(2, _whole_and_resumed, (cfg, str(tmp_path)), threads=1)
    assert sorted(results) == [0, 1]
    for rank, res in results.items():
        assert res["gathered"].tolist() == [0, 1, 10, 11, 12]  # ragged shares, in rank order
        assert res["summed"].tolist() == [3.0, 20.0] and res["broadcast"] == {"from": 0}
        for k, v in one.model.state_dict().items():
            torch.testing.assert_close(res["whole"][k], v, rtol=1e-4, atol=1e-5, msg=f"rank {rank} {k}")
            assert torch.equal(res["resumed"][k], res["whole"][k]), (rank, k)
        for a, b in zip(res["history"], one.history):
            for key in ("train_elbo", "valid_elbo", "test_elbo", "test_kl"):
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-5), (rank, key)
    rows = RunDir(tmp_path / "whole").read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["epoch"] for r in RunDir(tmp_path / "parts").read_metrics()] == [1, 2]
    assert not list(tmp_path.rglob("*.tmp"))


def _rank0_stops_after_epoch_1(cfg, folder: str) -> list[int]:
    """Only rank 0's on_epoch asks to stop: every rank must leave the loop with it (else the job hangs)."""
    distributed.start(torch.device("cpu"), 60)
    try:
        rank = distributed.world().rank
        res = train(cfg, out=folder, on_epoch=lambda r: rank == 0 and r["epoch"] == 1)
    finally:
        distributed.stop()
    return [r["epoch"] for r in res.history]


@pytest.mark.slow
def test_a_stop_asked_by_one_rank_stops_every_rank(tmp_path, config_factory):
    cfg = config_factory(**{"train.epochs": 3, "data.train_limit": 256, "model.hidden": (32,)})
    results = distributed.launch(2, _rank0_stops_after_epoch_1, (cfg, str(tmp_path / "run")), threads=1)
    assert results == {0: [1], 1: [1]}
    assert [r["epoch"] for r in RunDir(tmp_path / "run").read_metrics()] == [1]


def _killed_midway(cfg, folder: str) -> None:
    """Rank 1 is killed (SIGKILL) at its 30th objective call, in epoch 2."""
    calls = {"n": 0}
    original = elbo_module.OBJECTIVES["elbo"]

    def fatal(model, x, ocfg, beta, gen):
        calls["n"] += 1
        if calls["n"] == 30 and distributed.world().rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(model, x, ocfg, beta, gen)

    elbo_module.OBJECTIVES["elbo"] = fatal
    train(cfg, out=f"{folder}/run")


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_with_one_error(tmp_path, config_factory):
    cfg = config_factory(**{"train.epochs": 50, "train.dist_timeout": 20})
    began = time.monotonic()
    with pytest.raises(DistributedError, match=r"^rank 1 died \(SIGKILL\); the job stopped$"):
        distributed.launch(2, _killed_midway, (cfg, str(tmp_path)), threads=1)
    assert time.monotonic() - began < 60
    rows = RunDir(tmp_path / "run").read_metrics()
    assert len(rows) < 50


@pytest.mark.slow
def test_more_processes_than_images_is_one_line(tmp_path, capsys, one_line_error):
    args = ["--batch-size", "4", "--set", "data.train_limit=1", "--set", "data.valid_fraction=0"]
    code = main(["train", *CLI, *args, "--nproc", "2", "--out", str(tmp_path / "r")])
    one_line_error(capsys, code, "rank 0/2", "2 processes but digits has only 1 training image(s)")


@pytest.mark.slow
def test_vaelab_train_nproc_2_equals_one_process_and_resumes_across_process_counts(tmp_path):
    """The command as users run it: `--nproc 2` ends where one process ends, rank 0 alone writes the folder
    and its figures, and a run may continue with another process count (the global batch is what counts)."""
    args = [a for a in CLI if a != "--no-figures"] + ["--batch-size", "64", "--set", "data.train_limit=512"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", *args, "--epochs", "2", "--out", str(one)]) == 0
    assert main(["train", *args, "--epochs", "2", "--nproc", "2", "--out", str(two)]) == 0

    def params(run):
        return read_checkpoint(run / "checkpoints" / "last.pt")["model"]

    for k, v in params(one).items():
        torch.testing.assert_close(params(two)[k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert {p.name for p in (two / "figures").glob("*.png")} == {
        p.name for p in (one / "figures").glob("*.png")
    }
    assert [r["epoch"] for r in RunDir(two).read_metrics()] == [1, 2]
    assert not list(tmp_path.rglob("*.tmp"))
    # continue each with the other process count: both end at the same epoch-3 parameters
    assert (
        main(["train", *args, "--epochs", "3", "--no-figures", "--nproc", "2", "--out", str(one), "--resume"])
        == 0
    )
    assert main(["train", *args, "--epochs", "3", "--no-figures", "--out", str(two), "--resume"]) == 0
    for k, v in params(one).items():
        torch.testing.assert_close(params(two)[k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert [r["epoch"] for r in RunDir(one).read_metrics()] == [1, 2, 3]


@pytest.mark.slow
def test_an_evaluation_batch_smaller_than_the_world_is_scored_like_one_process(
    tmp_path, capsys, one_line_error
):
    """Validation has 51 images in batches of 50: the last batch has one image for two ranks. The rank with
    no share skips it (it crashed on an empty slice) and the statistics equal one process's."""
    args = [*CLI, "--batch-size", "64", "--epochs", "1", "--set", "data.train_limit=512"]
    args += ["--set", "train.eval_batch_size=50"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", *args, "--out", str(one)]) == 0
    assert main(["train", *args, "--nproc", "2", "--out", str(two)]) == 0
    a, b = RunDir(one).read_metrics()[0], RunDir(two).read_metrics()[0]
    for key in ("valid_elbo", "test_elbo", "valid_kl"):
        assert b[key] == pytest.approx(a[key], rel=1e-5), key
    code = main(
        ["train", *CLI, "--set", "train.eval_batch_size=1", "--nproc", "2", "--out", str(tmp_path / "x")]
    )
    one_line_error(capsys, code, "2 processes but train.eval_batch_size 1")


def _nan_on_rank_1(cfg, folder: str) -> list[int]:
    """Rank 1 alone sees a NaN loss at its 5th training step; on_diverge=restart."""
    from vaelab.train.loop import FiniteWatch

    original, seen = FiniteWatch.add, {"n": 0}

    def add(self, loss, epoch, step):
        seen["n"] += 1
        if seen["n"] == 5 and distributed.world().rank == 1:
            loss = loss * float("nan")
        return original(self, loss, epoch, step)

    FiniteWatch.add = add
    distributed.start(torch.device("cpu"), 60)
    try:
        res = train(cfg, out=folder)
    finally:
        distributed.stop()
    return [r["lr"] for r in res.history]


@pytest.mark.slow
def test_a_nan_on_one_rank_restarts_every_rank_together(tmp_path, config_factory, capfd):
    """The ranks agree on a non-finite loss: both go back to the last checkpoint at half the rate, at once,
    instead of rank 0 waiting in backward for the timeout while rank 1 restarts alone."""
    cfg = config_factory(
        **{
            "train.epochs": 2,
            "data.train_limit": 256,
            "train.on_diverge": "restart",
            "train.dist_timeout": 60,
        }
    )
    began = time.monotonic()
    results = distributed.launch(2, _nan_on_rank_1, (cfg, str(tmp_path / "run")), threads=1)
    assert time.monotonic() - began < 50
    assert results[0] == results[1] and len(results[0]) == 2 and results[0][-1] == pytest.approx(5e-4)


@pytest.mark.slow
def test_resume_under_nproc_checks_the_saved_batch_size(tmp_path):
    """Trained with batch 96, resumed with --nproc 3: 96 splits over 3 ranks (it was refused against the
    command line's default 128)."""
    run = tmp_path / "r"
    args = [*CLI, "--batch-size", "96", "--set", "data.train_limit=384"]
    assert main(["train", *args, "--epochs", "1", "--out", str(run)]) == 0
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--nproc", "3", "--quiet"]) == 0
    assert [r["epoch"] for r in RunDir(run).read_metrics()] == [1, 2]


def test_the_failing_ranks_own_error_is_reported_not_the_others_lost_contact(tmp_path):
    """Rank 1 failed on its own (here a non-finite loss); rank 0 only lost contact with it: the job's one
    line is rank 1's cause (the lowest rank's 'lost contact' line hid it)."""
    from types import SimpleNamespace

    (tmp_path / "rank0").write_text("rank 0/2: lost contact with the other ranks (Connection closed by peer)")
    (tmp_path / "rank1").write_text("rank 1/2: loss became nan at epoch 1, step 3; training stopped")
    failures = {0: SimpleNamespace(exitcode=1), 1: SimpleNamespace(exitcode=1)}
    assert distributed._explain(failures, str(tmp_path)).startswith("rank 1/2: loss became nan")
    (tmp_path / "rank1").unlink()
    assert "lost contact" in distributed._explain(failures, str(tmp_path))  # nothing better to say
