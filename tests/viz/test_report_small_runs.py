"""The report and every figure of real runs on image folders whose test splits hold 1, 2, 3 and 7 images
(issue 22, item 1: the report pasted a raw tensor error into the page), and of a run with no metrics yet."""

from __future__ import annotations

import base64
import io
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from vaelab.commands.common import open_run
from vaelab.train import train
from vaelab.viz import figures as fig
from vaelab.viz.curves import curves_title
from vaelab.viz.figureset import FIGURES, draw_figures
from vaelab.viz.report import build_report

from vaelab_testing import REPORT_PICTURE_HEADINGS, assert_report_cards_show, small_config


def _images(page: str) -> list[Image.Image]:
    """The page's embedded PNGs, opened."""
    uris = re.findall(r'<img src="data:image/png;base64,([^"]*)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(u))) for u in uris]


FOLDER_SIZES = {1: 10, 2: 20, 3: 30, 7: 70}  # test images: the folder's size // 10, at least 1


@pytest.fixture(scope="module")
def folder_runs(tmp_path_factory):
    """One trained run per test-split size, on a folder of 8x8 grey pictures (a 16-d latent space, so the
    manifold and scatter need principal directions)."""
    root = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(0)
    runs = {}
    for k, n in FOLDER_SIZES.items():
        folder = root / f"pics{n}"
        folder.mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
        cfg = small_config(
            **{
                "data.name": f"folder:{folder}",
                "data.image_size": 8,
                "model.latent_dim": 16,
                "train.epochs": 1,
            }
        )
        train(cfg, out=root / f"run{k}")
        runs[k] = root / f"run{k}"
    return runs


@pytest.mark.parametrize("k", sorted(FOLDER_SIZES))
def test_every_figure_and_the_report_of_a_run_with_k_test_images(k, folder_runs, tmp_path):
    run = folder_runs[k]
    o = open_run(str(run))
    test = o.split("test")
    assert len(test) == k
    drawn, skipped = draw_figures(
        o.model, tmp_path, test, fig.codes(o.model, o.split("train")), o.run.read_metrics()
    )
    one_line = f"interpolations need two test images, and folder:pics{FOLDER_SIZES[k]}/test has 1 image"
    assert set(drawn) == set(FIGURES) - ({"interpolations"} if k == 1 else set())
    assert skipped == ({"interpolations": one_line} if k == 1 else {})

    text = build_report(run)
    assert len(_images(text)) == len(drawn)  # curves and the pictures drawn
    # each card under its heading: the figure drawn above (the same seed, 0), pixel for pixel
    headings = {key: heading for heading, key in REPORT_PICTURE_HEADINGS.items()}
    headings["curves"] = curves_title(o.run.read_metrics())
    assert_report_cards_show(text, {headings[key]: path for key, path in drawn.items()})
    notes = re.findall(r'<p class="note">([^<]*)</p>', text)
    assert notes == ([f"not drawn: {one_line}"] if k == 1 else [])
    assert "Error" not in text and "tensor" not in text


def test_a_report_of_a_run_with_no_metrics_yet(folder_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(folder_runs[7], run)
    (run / "metrics.jsonl").unlink()
    text = build_report(run)
    assert "No metrics.jsonl yet: the run has no training curves." in text
    assert len(_images(text)) == 5  # every picture; no curves, and no card saying they are missing
    assert "not drawn" not in text


def test_a_folder_run_shows_its_image_size_and_channels(folder_runs):
    config = build_report(folder_runs[2]).split("<h2>Config</h2>")[1]
    assert "<tr><th>image_size</th><td>8</td></tr>" in config
    assert "<tr><th>channels</th><td>1</td></tr>" in config
