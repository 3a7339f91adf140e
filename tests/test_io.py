"""Atomic writes: whole files or nothing, with the permissions a plain open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from vaelab.errors import VaelabError
from vaelab.io import FILE_MODE, atomic_open, atomic_write_text, check_can_create


def test_atomic_files_follow_the_umask(tmp_path):
    p = atomic_write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(os.stat(p).st_mode) == FILE_MODE
    assert FILE_MODE & 0o044  # readable by others under the usual umask 022


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), atomic_open(p, "w") as f:
        f.write("half of the new")
        raise RuntimeError("crash mid-write")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_unwritable_place_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(VaelabError, match="cannot create folder"):
        atomic_write_text(blocker / "sub" / "a.txt", "x")


@pytest.mark.parametrize("where", ["file/a.png", "file/sub/a.png"])
def test_a_file_where_a_folder_should_be_is_named(where, tmp_path):
    """`vaelab sample RUN --out FILE/a.png`: the file in the way is named ("cannot create folder FILE: File
    exists" was the message, or "Not a directory")."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(VaelabError, match=r"cannot create folder .*: .*/file is not a folder$"):
        atomic_write_text(tmp_path / where, "x")
    assert (tmp_path / "file").read_text() == "x"


def test_check_can_create_creates_nothing_and_names_the_blocker(tmp_path):
    target = tmp_path / "a" / "b" / "checkpoints"
    assert check_can_create(target) == target
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(VaelabError, match=r"cannot create folder .*file/run: .*file is not a folder"):
        check_can_create(tmp_path / "file" / "run")


def test_json_files_are_strict_json_with_null_for_non_finite_numbers(tmp_path):
    """JSON has no NaN or Infinity: a bare NaN token (json.dumps' default) breaks JavaScript's JSON.parse."""
    import json
    import math

    import numpy as np

    from vaelab.io import atomic_write_json
    from vaelab.runs import RunDir

    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))

    path = atomic_write_json(
        tmp_path / "x.json", {"a": math.nan, "b": [math.inf, np.float32(1.5)], "c": np.int64(3), "d": "NaN"}
    )
    assert strict(path.read_text()) == {"a": None, "b": [None, 1.5], "c": 3, "d": "NaN"}
    run = RunDir.at(tmp_path / "run")
    run.root.mkdir()
    run.write_metrics([{"epoch": 1, "samples_per_s": math.inf, "test_elbo": -90.5}])
    assert [strict(line) for line in run.metrics.read_text().splitlines()] == [
        {"epoch": 1, "samples_per_s": None, "test_elbo": -90.5}
    ]


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    from vaelab.train import train

    from vaelab_testing import small_config

    out = tmp_path_factory.mktemp("metrics") / "run"
    train(small_config(**{"train.epochs": 1}), out=out)
    return out


@pytest.mark.parametrize(
    "line",
    ["[1, 2]", "42", '{"epoch": "1"}', '{"epoch": 1, "test_elbo": "abc"}', '{"epoch": true}', "{not json"],
)
def test_an_edited_metrics_line_is_one_line_error_in_every_reader(
    line, one_epoch_run, tmp_path, capsys, one_line_error
):
    """metrics.jsonl is plain text a user may edit: curves and figures say which line is wrong (it was a
    traceback), the report says it in place of the curves."""
    import shutil

    from vaelab.cli import main

    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)
    with (run / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write(line + "\n")
    for command in (["curves", str(run)], ["figures", str(run)]):
        one_line_error(capsys, main(command), "metrics.jsonl: line 2 is not")
    assert main(["report", str(run)]) == 0  # the report shows the rest, with the reason as a note
    assert "metrics.jsonl: line 2 is not" in (run / "report.html").read_text(encoding="utf-8")


def test_a_metrics_file_that_is_not_text_is_one_line_error_in_every_reader(
    one_epoch_run, tmp_path, capsys, one_line_error
):
    """Binary bytes in metrics.jsonl (a wrong file copied in, a damaged disk): curves and figures name the
    line (it was a UnicodeDecodeError traceback, in the report too), the report says it in place of the curves."""
    import shutil

    from vaelab.cli import main

    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)
    with (run / "metrics.jsonl").open("ab") as f:
        f.write(b"\xff\xfe\x00\x01\n")
    for command in (["curves", str(run)], ["figures", str(run)]):
        one_line_error(capsys, main(command), "metrics.jsonl: line 2 is not UTF-8 text")
    assert main(["report", str(run)]) == 0
    assert "metrics.jsonl: line 2 is not UTF-8 text" in (run / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", [["mcmc", "--model", "banana"], ["vi", "--model", "banana"]])
def test_toy_commands_refuse_an_empty_out(command, tmp_path):
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "vaelab", *command, "--out", "", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1
    assert (
        res.stderr.strip()
        .splitlines()[-1]
        .endswith("--out is empty (an unset shell variable?): name the file or folder to write")
    )
    assert list(tmp_path.iterdir()) == []
