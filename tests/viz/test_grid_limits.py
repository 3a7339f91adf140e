"""A grid holds at most 32 x 32 pictures and is drawn at least at its own resolution (issue 22, item 20:
`vaelab sample RUN -n 100000` wrote a 507x557 image of moiré over the run's samples.png)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.cli import main
from vaelab.data import prepare_split
from vaelab.models.registry import build_model
from vaelab.train import train
from vaelab.viz import figures as fig
from vaelab.viz import labelled
from vaelab.viz.grids import GRID_SIDE, save_panels

from vaelab_testing import small_config


@pytest.fixture
def panels(monkeypatch):
    """The (title, image) panels and the title each figure would save."""
    seen: dict = {}

    def save(path, panels, title=None, inches=4.5):
        seen.update(panels=panels, title=title)
        return path

    monkeypatch.setattr(fig, "save_panels", save)
    monkeypatch.setattr(labelled, "save_panels", save)
    return seen


def _model(name: str = "vae"):
    cfg = small_config(**{"model.name": name})
    torch.manual_seed(0)
    test = prepare_split(cfg.data, "test")
    return build_model(cfg.model, test.shape).eval(), test


def test_a_huge_sample_is_capped_at_one_grid_and_says_so(panels, tmp_path, capsys):
    model, _ = _model()
    fig.samples_figure(model, tmp_path / "samples.png", n=100_000)
    assert capsys.readouterr().out == (
        "note: samples.png holds 1,024 of the 100,000 samples asked (a grid shows at most 32 x 32 pictures)\n"
    )
    assert panels["title"] == "1,024 of the 100,000 samples asked (seed 0)"
    assert panels["panels"][0][1].shape == (32 * 9 - 1, 32 * 9 - 1)  # 32 x 32 digits of 8 px, 1 px apart
    fig.samples_figure(model, tmp_path / "samples.png", n=GRID_SIDE**2)
    assert capsys.readouterr().out == "" and panels["title"] == "1024 samples (seed 0)"


def test_every_grid_is_capped(panels, tmp_path, capsys):
    model, test = _model()
    fig.manifold_figure(model, test, tmp_path / "m.png", n=100)
    assert panels["panels"][0][1].shape == (32 * 8, 32 * 8)
    fig.reconstructions_figure(model, test, tmp_path / "r.png", n=5000)
    assert panels["panels"][0][1].shape == (17 * 9 - 1, 18 * 9 - 1)  # all 300 test images: 18 columns
    fig.interpolations_figure(model, test, tmp_path / "i.png", pairs=100, steps=100)
    assert panels["panels"][0][1].shape == (32 * 9 - 1, 32 * 9 - 1)
    cvae, _ = _model("cvae")
    fig.samples_figure(cvae, tmp_path / "s.png", n=100_000)  # 10 labels: at most 32 samples per label
    assert panels["panels"][0][1].shape == (10 * 9 - 1, 32 * 9 - 1)
    assert capsys.readouterr().out.splitlines() == [
        "note: m.png holds 32 of the 100 pictures per side asked (a grid shows at most 32 x 32 pictures)",
        "note: i.png holds 32 of the 100 steps asked (a grid shows at most 32 x 32 pictures)",
        "note: i.png holds 32 of the 100 pairs asked (a grid shows at most 32 x 32 pictures)",
        "note: s.png holds 32 of the 10,000 samples per label asked (a grid shows at most 32 x 32 pictures)",
    ]


def test_a_panel_is_drawn_at_least_at_its_own_resolution(tmp_path):
    """A 1,000-pixel grid was squeezed into a 4.5-inch panel (495 pixels at 110 dpi): moiré."""
    rng = np.random.default_rng(0)
    grid = rng.random((600, 1000)).astype(np.float32)
    with Image.open(save_panels(tmp_path / "p.png", [("a", grid), ("b", grid)], "t")) as im:
        assert im.size[0] >= 2 * 1000 and im.size[1] >= 600


def test_vaelab_sample_caps_and_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    train(small_config(**{"train.epochs": 1}), out=run)
    assert main(["sample", str(run), "-n", "100000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("note: samples.png holds 1,024 of the 100,000 samples asked")
    assert out[-1] == f"wrote {run / 'figures' / 'samples.png'}"
    with Image.open(run / "figures" / "samples.png") as im:
        assert im.size[0] >= 32 * 9
