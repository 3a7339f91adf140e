"""`vaelab train` and `vaelab figures` on a run whose test split is small: the figures that can be drawn are
written, and the one that cannot (interpolations of a one-image test split) is one line, not an exit 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main

ALL = {"samples", "reconstructions", "manifold", "interpolations", "latents", "curves"}


@pytest.fixture(scope="module")
def pics(tmp_path_factory) -> Path:
    """12 grey 8x8 pictures: a test split of one image (a tenth, at least one)."""
    folder = tmp_path_factory.mktemp("fig-cli") / "pics"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_train_on_a_one_image_test_split_draws_the_rest_and_names_the_one_skipped(pics, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", f"folder:{pics}", "--image-size", "8", "--hidden", "16", "--latent-dim", "2"]
    code = main([*argv, "--epochs", "1", "--quiet", "--threads", "1", "--out", str(run)])
    out = capsys.readouterr().out
    assert code == 0, out
    line = "not drawn (interpolations need two test images, and folder:pics/test has 1 image): interpolations"
    assert line in out.splitlines()
    assert {p.stem for p in (run / "figures").glob("*.png")} == ALL - {"interpolations"}

    assert main(["figures", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert line in out.splitlines()
    written = [s.removeprefix("wrote ") for s in out.splitlines() if s.startswith("wrote ")]
    assert {Path(p).stem for p in written} == ALL - {"interpolations"}
