"""`vaelab eval --out PATH`: a PATH that could not be written is refused in one line before any evaluation,
not after hours of it."""

from __future__ import annotations

import importlib
import os

import pytest

from test_faults import _freeze, _thaw
from vaelab.cli import main


@pytest.fixture
def no_evaluation(monkeypatch):
    """Evaluating at all fails the test: the output must be refused first."""

    def evaluate(*args, **kwargs):
        pytest.fail("evaluated before checking where eval.json goes")

    # the module, not vaelab.evaluate.run, which is a function of that package
    monkeypatch.setattr(importlib.import_module("vaelab.evaluate.run"), "run_evaluation", evaluate)


@pytest.fixture
def frozen(tmp_path):
    """A folder that even root cannot write into (chattr +i, else chmod), thawed afterwards."""
    folder = tmp_path / "frozen"
    folder.mkdir()
    try:
        if not _freeze(folder):
            pytest.skip("cannot make a folder read-only here (root without chattr +i)")
        yield folder
    finally:
        _thaw(folder)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_out_in_a_read_only_folder_is_refused_before_evaluating(
    tmp_path, frozen, no_evaluation, capsys, one_line_error
):
    run = tmp_path / "run"
    run.mkdir()
    code = main(["eval", str(run), "--out", str(frozen / "eval.json")])
    one_line_error(capsys, code, "vaelab eval: error:", str(frozen), "not writable")
    code = main(["eval", str(run), "--out", str(frozen / "new" / "eval.json")])  # a folder it would create
    one_line_error(capsys, code, "vaelab eval: error:", str(frozen), "not writable")
    assert list(frozen.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_a_read_only_run_folder_is_refused_before_evaluating(frozen, no_evaluation, capsys, one_line_error):
    code = main(["eval", str(frozen)])  # eval.json would go into RUN
    one_line_error(capsys, code, "vaelab eval: error:", str(frozen), "not writable")


def test_a_folder_as_out_is_refused_before_evaluating(tmp_path, no_evaluation, capsys, one_line_error):
    run = tmp_path / "run"
    run.mkdir()
    folder = tmp_path / "results"
    folder.mkdir()
    code = main(["eval", str(run), "--out", str(folder)])
    one_line_error(capsys, code, "vaelab eval: error:", f"cannot write {folder}: it is a folder")
    assert list(folder.iterdir()) == []
    (run / "eval.json").mkdir()  # the default place taken by a folder
    code = main(["eval", str(run)])
    one_line_error(capsys, code, "vaelab eval: error:", f"cannot write {run / 'eval.json'}: it is a folder")


def test_a_missing_run_is_still_named_as_such(tmp_path, capsys, one_line_error):
    code = main(["eval", str(tmp_path / "nosuch")])
    one_line_error(capsys, code, "vaelab eval: error:", "no run folder or checkpoint at")
    code = main(["eval", ""])
    one_line_error(capsys, code, "vaelab eval: error:", "empty path")
