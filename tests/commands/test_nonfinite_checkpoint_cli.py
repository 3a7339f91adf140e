"""A checkpoint whose weights hold NaN or inf: every command that opens it refuses it in one line, and writes
nothing (no blank images, no NaN bounds, no figure overwritten)."""

from __future__ import annotations

import shutil

import pytest

from vaelab.cli import main
from vaelab.errors import CheckpointError
from vaelab.train import read_checkpoint, save_checkpoint, train
from vaelab.train.checkpoint import model_from_checkpoint


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    from vaelab_testing import small_config

    out = tmp_path_factory.mktemp("nonfinite") / "run"
    train(small_config(**{"train.epochs": 1}), out=out)
    return out


def _poison(run, name: str, value: float) -> None:
    """Set one weight of run's best.pt to `value`, resealed by the module's own writer (a valid checkpoint)."""
    best = run / "checkpoints" / "best.pt"
    ck = read_checkpoint(best)
    ck["model"][name] = ck["model"][name].clone()
    ck["model"][name].view(-1)[3] = value
    save_checkpoint(best, ck)


def _files(folder) -> dict:
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def nan_run(good_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    first = next(iter(read_checkpoint(run / "checkpoints" / "best.pt")["model"]))
    _poison(run, first, float("nan"))
    return run, first


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_model_from_checkpoint_names_the_file_and_the_first_bad_tensor(good_run, tmp_path, value):
    ck = read_checkpoint(good_run / "checkpoints" / "best.pt")
    names = [k for k, v in ck["model"].items() if v.is_floating_point()]
    for name in names[-1:] + names[1:2]:  # the first bad one is named, whichever it is
        bad = {**ck, "model": dict(ck["model"])}
        bad["model"][name] = bad["model"][name].clone().fill_(value)
        with pytest.raises(CheckpointError) as e:
            model_from_checkpoint(bad, "X/best.pt")
        assert str(e.value) == (
            f"X/best.pt: the model's weights hold NaN or inf ({name}); the run diverged before this "
            "checkpoint was written?"
        )
    model_from_checkpoint(ck, "X/best.pt")  # finite weights still load


def test_sample_refuses_nan_weights_and_writes_nothing(nan_run, capsys, one_line_error):
    run, name = nan_run
    before = _files(run)
    out = run.parent / "samples.png"
    code = main(["sample", str(run), "-n", "4", "--out", str(out)])
    one_line_error(
        capsys,
        code,
        "vaelab sample: error:",
        f"{run / 'checkpoints' / 'best.pt'}: the model's weights hold NaN or inf ({name})",
    )
    assert not out.exists()
    code = main(["sample", str(run), "-n", "4"])  # the default place, RUN/figures/samples.png
    one_line_error(capsys, code, "NaN or inf")
    assert _files(run) == before


def test_eval_refuses_nan_weights_and_writes_nothing(nan_run, capsys, one_line_error):
    run, name = nan_run
    before = _files(run)
    code = main(["eval", str(run), "--importance", "2", "--quiet"])
    one_line_error(
        capsys,
        code,
        "vaelab eval: error:",
        f"{run / 'checkpoints' / 'best.pt'}: the model's weights hold NaN or inf ({name})",
    )
    assert _files(run) == before and not (run / "eval.json").exists()


def test_the_healthy_last_checkpoint_still_opens(nan_run, capsys):
    run, _ = nan_run
    out = run.parent / "samples.png"
    assert main(["sample", str(run), "--checkpoint", "last", "-n", "4", "--out", str(out)]) == 0
    assert out.is_file()
