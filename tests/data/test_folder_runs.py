"""folder: runs end to end: an empty path refused before anything is written, a relative path that still
names the folder from another directory, --data-dir re-pointing a folder that moved, and folder-only flags
refused on a named data set (each through the command line, in one line)."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from vaelab.cli import main
from vaelab.commands.common import open_run

from vaelab_testing import TINY_TRAIN

FAST = ["--hidden", "32", "--latent-dim", "2", "--epochs", "1", "--quiet", "--threads", "1", "--no-figures"]


def _pictures(folder, n: int = 20) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")


def test_train_on_an_empty_folder_path_is_one_line_and_writes_nothing(
    tmp_path, monkeypatch, capsys, one_line_error
):
    _pictures(tmp_path / "figures")  # PNGs below the current folder: an unset $DIR must not train on them
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--data", "folder:", "--image-size", "8", *FAST, "--out", "run"])
    one_line_error(capsys, code, "--data folder: has an empty path (an unset shell variable?)")
    assert not (tmp_path / "run").exists()


def test_a_run_on_a_relative_folder_is_evaluated_from_another_directory(tmp_path, monkeypatch, capsys):
    _pictures(tmp_path / "work" / "good")
    monkeypatch.chdir(tmp_path / "work")
    assert main(["train", "--data", "folder:good", "--image-size", "8", *FAST, "--out", "run"]) == 0
    run = tmp_path / "work" / "run"
    assert (
        json.loads((run / "config.json").read_text())["data"]["name"]
        == f"folder:{tmp_path / 'work' / 'good'}"
    )
    monkeypatch.chdir(tmp_path)  # another directory: the stored path still names the folder
    before = open_run(str(run)).split("test").images
    assert main(["eval", str(run), "--importance", "2", "--quiet", "--out", str(tmp_path / "a.json")]) == 0
    (tmp_path / "moved").mkdir()
    (tmp_path / "work" / "good").rename(tmp_path / "moved" / "good")
    capsys.readouterr()
    out = tmp_path / "b.json"
    assert (
        main(["eval", str(run), "--importance", "2", "--quiet", "--data-dir", "moved", "--out", str(out)])
        == 0
    )
    err = capsys.readouterr().err
    assert f"reading the images in {tmp_path / 'moved' / 'good'} (--data-dir)" in err
    a, b = (json.loads(p.read_text())["importance"]["per_datum"] for p in (tmp_path / "a.json", out))
    assert a == b and len(a) == 2  # the same test images, the same numbers
    assert torch.equal(open_run(str(run)).split("test", str(tmp_path / "moved")).images, before)


def test_a_moved_folder_without_data_dir_is_one_line_saying_how_to_re_point_it(
    tmp_path, capsys, one_line_error
):
    _pictures(tmp_path / "good")
    run = tmp_path / "run"
    assert (
        main(
            ["train", "--data", f"folder:{tmp_path / 'good'}", "--image-size", "8", *FAST, "--out", str(run)]
        )
        == 0
    )
    (tmp_path / "good").rename(tmp_path / "gone")
    capsys.readouterr()
    code = main(["eval", str(run), "--importance", "2", "--quiet"])
    one_line_error(capsys, code, f"image folder not found: {tmp_path / 'good'}", "pass --data-dir DIR")


def test_image_size_or_channels_on_a_named_data_set_is_one_line(tmp_path, capsys, one_line_error):
    for flag, value in (("--image-size", "32"), ("--channels", "3")):
        code = main(["train", *TINY_TRAIN, flag, value, "--out", str(tmp_path / "r")])
        one_line_error(capsys, code, f"{flag} {value} (data.", "applies to folder:PATH images only")
        assert not (tmp_path / "r" / "checkpoints").exists()
