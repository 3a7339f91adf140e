"""Frey Face frames are 28x20, not square: a tiny frey_rawface.mat trains, every figure is drawn at the
frames' aspect, and the explorer decodes a 28x20 picture."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main

from vaelab_testing import tiny_frey_face

H, W = 28, 20


class FreyRun(NamedTuple):
    run: Path
    data: Path
    panels: dict[str, list[tuple[int, ...]]]  # figure name: the shape of each tiled panel `vaelab train` drew


@pytest.fixture(scope="module")
def frey_run(tmp_path_factory):
    """A 2-epoch run on 60 tiny Frey Face frames, and the shape of every panel its figures tiled."""
    from vaelab.viz import figures as fig

    root = tmp_path_factory.mktemp("frey")
    tiny_frey_face(root / "data", frames=60)  # a bright blob drifting across a grey 28x20 frame
    run = root / "run"
    flags = ["--data", "frey-face", "--data-dir", str(root / "data"), "--binarize", "none"]
    flags += ["--likelihood", "gaussian", "--hidden", "16", "--latent-dim", "2", "--epochs", "2"]
    flags += ["--batch-size", "20", "--quiet", "--threads", "1", "--out", str(run)]
    panels = {}
    real = fig.save_panels

    def save_panels(path, drawn, *args, **kwargs):
        panels[Path(path).stem] = [img.shape for _, img in drawn]
        return real(path, drawn, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fig, "save_panels", save_panels)
        assert main(["train", *flags]) == 0
    return FreyRun(run, root / "data", panels)


def _size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def _grid(n: int, ncol: int, pad: int = 1) -> tuple[int, int]:
    """The shape of n frames tiled ncol to a row with `pad` pixels between them."""
    rows = math.ceil(n / ncol)
    return rows * (H + pad) - pad, ncol * (W + pad) - pad


def _pictures_aspect(path, panels: int) -> float:
    """Height over width of one of `panels` side-by-side pictures in a saved figure, titles left out: its
    columns are those mostly inked (titles are a small share of the height), its rows those inked across
    nearly all of those columns (a title line inks under two thirds). The gap between panels counts in."""
    with Image.open(path) as im:
        ink = np.asarray(im.convert("L")) < 255
    cols = np.flatnonzero(ink.mean(0) > 0.4)
    rows = np.flatnonzero(ink[:, cols[0] : cols[-1] + 1].mean(1) > 0.75)
    return (rows[-1] + 1 - rows[0]) / ((cols[-1] + 1 - cols[0]) / panels)


@pytest.mark.parametrize("name", ["samples", "reconstructions", "manifold", "interpolations"])
def test_every_picture_figure_of_a_frey_face_run_is_drawn_at_the_frames_aspect(frey_run, name):
    """Each picture panel tiles 28x20 frames (1 white pixel between them, none in the manifold), and the saved
    PNG shows it at that tile's aspect, not stretched: within 3% (pixel rounding, the gap between panels)."""
    from vaelab.commands.common import open_run

    n_test = len(open_run(str(frey_run.run)).split("test", str(frey_run.data)))
    shown = min(32, n_test)  # reconstructions: up to 32 test frames, ceil(sqrt(n)) to a row
    pairs = min(6, n_test // 2)  # interpolations: up to 6 paths of 10 steps, linear and spherical
    expected = {
        "samples": [_grid(64, 8)],
        "reconstructions": [_grid(shown, math.ceil(math.sqrt(shown)))] * 2,
        "manifold": [_grid(20 * 20, 20, pad=0)],
        "interpolations": [_grid(pairs * 10, 10)] * 2,
    }[name]
    assert frey_run.panels[name] == expected
    th, tw = expected[0]
    aspect = _pictures_aspect(frey_run.run / "figures" / f"{name}.png", len(expected))
    assert aspect == pytest.approx(th / tw, rel=0.03)


def test_the_manifold_grid_of_28x20_frames_is_6_frames_high_and_wide(frey_run, tmp_path, monkeypatch):
    run, data_dir, _ = frey_run
    out = tmp_path / "m.png"
    assert main(["manifold", str(run), "--data-dir", str(data_dir), "-n", "6", "--out", str(out)]) == 0
    assert min(_size(out)) > 100
    from vaelab.viz import figures as fig

    drawn = {}
    monkeypatch.setattr(
        fig, "save_panels", lambda path, panels, *a, **k: drawn.update(img=panels[0][1]) or path
    )
    assert main(["manifold", str(run), "--data-dir", str(data_dir), "-n", "6", "--out", str(out)]) == 0
    assert drawn["img"].shape == (6 * H, 6 * W)


def test_the_explorer_decodes_a_28x20_picture(frey_run):
    run = frey_run.run
    from vaelab.serve import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    client = TestClient(create_app(run.parent))
    r = client.post("/api/decode", json={"run": run.name, "z": [0.0, 0.0]})
    assert r.status_code == 200, r.text
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.size == (W, H)
