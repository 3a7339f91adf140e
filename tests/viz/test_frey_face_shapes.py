"""Frey Face frames are 28x20, not square: a tiny frey_rawface.mat trains, every figure is drawn at the
frames' aspect, and the explorer decodes a 28x20 picture."""

from __future__ import annotations

import io
import warnings

import pytest
from PIL import Image

from vaelab.cli import main

from vaelab_testing import tiny_frey_face

H, W = 28, 20


@pytest.fixture(scope="module")
def frey_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("frey")
    tiny_frey_face(root / "data", frames=60)  # a bright blob drifting across a grey 28x20 frame
    run = root / "run"
    flags = ["--data", "frey-face", "--data-dir", str(root / "data"), "--binarize", "none"]
    flags += ["--likelihood", "gaussian", "--hidden", "16", "--latent-dim", "2", "--epochs", "2"]
    flags += ["--batch-size", "20", "--quiet", "--threads", "1", "--out", str(run)]
    assert main(["train", *flags]) == 0
    return run, root / "data"


def _size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


@pytest.mark.parametrize("name", ["samples", "reconstructions", "manifold", "interpolations"])
def test_every_picture_figure_of_a_frey_face_run_is_drawn_at_the_frames_aspect(frey_run, name):
    run, _ = frey_run
    w, h = _size(run / "figures" / f"{name}.png")
    assert w > 100 and h > 100


def test_the_manifold_grid_of_28x20_frames_is_6_frames_high_and_wide(frey_run, tmp_path, monkeypatch):
    run, data_dir = frey_run
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
    run, _ = frey_run
    from vaelab.serve import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    client = TestClient(create_app(run.parent))
    r = client.post("/api/decode", json={"run": run.name, "z": [0.0, 0.0]})
    assert r.status_code == 200, r.text
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.size == (W, H)
