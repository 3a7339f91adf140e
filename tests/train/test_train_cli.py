"""`vaelab train` as a new user meets it: an empty --out, --epochs 0, --resume with nothing left to train,
--resume with --overwrite, and a refused number named by its flag."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from vaelab.cli import main
from vaelab.errors import CheckpointError, ConfigError
from vaelab.train import load, read_checkpoint, train

from vaelab_testing import TINY_TRAIN


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below `folder`: its bytes and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory) -> Path:
    """A run of 2 epochs with its figures (made once; tests copy it before changing it)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", *TINY_TRAIN, "--epochs", "2", "--out", str(run)]) == 0
    return run


def _copy(run: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, to))


def test_an_empty_out_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, one_line_error):
    """`--out ""` (an unset shell variable) wrote config.json, checkpoints/, figures/ and metrics.jsonl into
    the current folder and printed `run folder: ` with nothing after it."""
    monkeypatch.chdir(tmp_path)
    for out in ("", "  "):
        code = main(["train", *TINY_TRAIN, "--out", out])
        line = one_line_error(capsys, code)
        assert (
            line
            == "vaelab train: error: --out is empty (an unset shell variable?): name the file or folder to write"
        )
    with pytest.raises(ConfigError, match="^the run folder is an empty path: name a folder, e.g. runs/mine$"):
        train(__import__("vaelab").Config().replace(**{"train.progress": False}), out="")
    assert os.listdir(tmp_path) == []


def test_an_empty_run_path_is_refused_by_every_reader(
    two_epochs, tmp_path, monkeypatch, capsys, one_line_error
):
    """Inside a run folder, `vaelab sample ''` drew over that run's samples.png ('' was the current folder),
    and `vaelab.load('')` loaded it."""
    run = _copy(two_epochs, tmp_path / "run")
    monkeypatch.chdir(run)
    before = _snapshot(run)
    for command in (
        ["sample", ""],
        ["eval", "", "--importance", "2", "--limit", "4", "--quiet"],
        ["report", ""],
    ):
        one_line_error(capsys, main(command), "the run folder or checkpoint is an empty path")
    with pytest.raises(CheckpointError, match="empty path"):
        load("")
    assert _snapshot(run) == before


def test_epochs_0_saves_the_untrained_model_as_a_baseline(tmp_path, capsys, config_factory):
    """--epochs 0 exited 0 and wrote no checkpoint, and `eval` then said "train the run first"."""
    run = tmp_path / "run"
    assert main(["train", *TINY_TRAIN, "--epochs", "0", "--out", str(run)]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"vaelab: note: train.epochs is 0: saved the untrained model as {run}/checkpoints/last.pt (epoch 0), "
        "a baseline"
    ]
    assert out.splitlines()[-1] == f"run folder: {run}"
    ck = read_checkpoint(run / "checkpoints/last.pt")
    assert ck["epoch"] == 0 and ck["history"] == [] and (run / "figures/samples.png").is_file()
    untrained = train(config_factory(**{"train.epochs": 0, "train.seed": 0, "model.latent_dim": 2})).model
    for k, v in untrained.state_dict().items():
        assert torch.equal(ck["model"][k], v), k  # the model every run of this seed starts from
    assert main(["eval", str(run), "--importance", "2", "--limit", "4", "--quiet"]) == 0
    assert (run / "eval.json").is_file()
    # the baseline is the start of that very run: continued, it ends where 1 epoch from scratch ends
    assert main(["train", *TINY_TRAIN, "--resume", "--no-figures", "--out", str(run)]) == 0
    assert main(["train", *TINY_TRAIN, "--no-figures", "--out", str(tmp_path / "whole")]) == 0
    a, b = (read_checkpoint(p / "checkpoints/last.pt") for p in (run, tmp_path / "whole"))
    assert a["epoch"] == b["epoch"] == 1
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.parametrize("epochs", ["1", "2"])
def test_resume_with_nothing_left_to_train_says_so_and_writes_nothing(epochs, two_epochs, tmp_path, capsys):
    """--resume --epochs 1 on a 2-epoch run was accepted silently (and rewrote config.json, metrics.jsonl
    and the figures)."""
    run = _copy(two_epochs, tmp_path / "run")
    before = _snapshot(run)
    code = main(["train", *TINY_TRAIN, "--resume", "--epochs", epochs, "--out", str(run)])
    out, err = capsys.readouterr()
    assert code == 0 and out == ""
    assert err.splitlines() == [
        f"vaelab: note: {run} already has 2 epochs (train.epochs is {epochs}): nothing to train; ask for "
        "more (--epochs / train.epochs) to continue it"
    ]
    assert _snapshot(run) == before


def test_resume_with_nothing_left_to_train_returns_the_saved_model(two_epochs, tmp_path, config_factory):
    run = _copy(two_epochs, tmp_path / "run")
    cfg = config_factory(**{"train.epochs": 1, "model.latent_dim": 2})
    res = train(cfg, out=run, resume=True, explicit={"train.epochs"})
    assert res.nothing_to_train and [r["epoch"] for r in res.history] == [1, 2]
    saved = read_checkpoint(run / "checkpoints/last.pt")["model"]
    assert all(torch.equal(saved[k], v) for k, v in res.model.state_dict().items())


def test_resume_and_overwrite_together_are_refused(
    two_epochs, tmp_path, capsys, one_line_error, config_factory
):
    run = _copy(two_epochs, tmp_path / "run")
    before = _snapshot(run)
    code = main(["train", *TINY_TRAIN, "--resume", "--overwrite", "--out", str(run)])
    line = one_line_error(capsys, code)
    assert line == (
        "vaelab train: error: --resume continues the run and --overwrite starts it again: pass one of them, "
        "not both"
    )
    with pytest.raises(ConfigError, match="pass one of them, not both"):
        train(config_factory(), out=run, resume=True, overwrite=True)
    assert _snapshot(run) == before
    code = main(["train", *TINY_TRAIN, "--resume", "--overwrite", "--out", str(tmp_path / "new")])
    one_line_error(capsys, code, "not both")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--epochs", "-1"], "--epochs / train.epochs must be >= 0 (0: save the untrained model), got -1"),
        (["--set", "train.lr=inf"], "--lr / train.lr must be a finite number, got inf"),
        (["--lr=-inf"], "--lr / train.lr must be a finite number, got -inf"),
        (["--batch-size", "0"], "--batch-size / train.batch_size must be >= 1, got 0"),
        (["--beta", "nan"], "--beta / objective.beta must be a finite number, got nan"),
        (["--noise", "gaussian:inf"], "--noise / objective.noise_level must be a finite number, got inf"),
        (["--set", "train.grad_clip=-1"], "train.grad_clip must be >= 0 (0: no clipping), got -1.0"),
        (["--set", "model.gaussian_sigma=inf"], "model.gaussian_sigma must be a finite number, got inf"),
    ],
)
def test_a_refused_number_is_named_by_its_flag_and_key(args, line, tmp_path, capsys, one_line_error):
    """--set train.lr=inf was accepted and diverged; a range error listed every constraint of its group."""
    code = main(["train", *TINY_TRAIN, *args, "--out", str(tmp_path / "r")])
    assert one_line_error(capsys, code) == f"vaelab train: error: {line}"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ["--model", "autoencoder", "--beta", "4"],
            ["model 'autoencoder' has no KL term: objective.beta do not apply to it"],
        ),
        (
            ["--model", "autoencoder", "--samples", "5", "--warmup", "2"],
            ["objective.warmup_epochs, objective.num_samples do not apply"],
        ),
        (
            ["--model", "vae", "--features", "runs/m1"],
            ["model 'vae' learns on the data itself: model.features (runs/m1) is M1+M2's, for model m2"],
        ),
        (["--model", "cvae", "--features", "runs/m1"], ["model 'cvae'", "for model m2"]),
    ],
)
def test_a_flag_the_model_would_ignore_is_refused(args, needles, tmp_path, capsys, one_line_error):
    """--beta 4 on the autoencoder (no KL term) and --features on any model but m2 trained without a word,
    the flag recorded in config.json as if it had been used; pixelcnn, gan and adgm refused them already."""
    code = main(["train", *TINY_TRAIN, *args, "--out", str(tmp_path / "r")])
    one_line_error(capsys, code, *needles)
    assert not (tmp_path / "r").exists()
