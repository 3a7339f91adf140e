"""The latent manifold of a model whose decoder takes a label (cvae, m2, adgm, M1+M2;
`vaelab.viz.label_manifold`), in the report and in `vaelab manifold --label Y`, on tiny trained runs: the report
holds one picture per label behind a selector of labels 0..C-1, each picture's pixels are the model's decode of
the Gaussian-quantile grid at that label (built here by hand), the plane of a D > 2 model is the top principal
plane of its test codes at their own labels (or the classifier's), an unlabelled run's report has no selector,
and the command's bad input is one line."""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import norm

from vaelab.cli import main
from vaelab.commands.common import open_run
from vaelab.errors import DataError
from vaelab.models.registry import model_config
from vaelab.train import train
from vaelab.viz.label_manifold import (
    label_codes,
    label_manifold,
    label_manifold_card,
    label_manifold_figure,
    why_no_label_manifold,
)
from vaelab.viz.report import build_report

from vaelab_testing import small_config

RUNS = {  # run: (model, config changes); a 2-d latent space unless said
    "vae": ("vae", {}),
    "cvae": ("cvae", {}),
    "m2": ("m2", {"data.labelled": 50}),
    "adgm": ("adgm", {"data.labelled": 50}),
    "m1m2": ("m2", {"data.labelled": 50, "model.features": "vae"}),  # M1+M2 on the VAE run's codes
    "cvae3": ("cvae", {"model.latent_dim": 3}),
    "m2-3": ("m2", {"data.labelled": 50, "model.latent_dim": 3}),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("label-manifold")
    for name, (model, flat) in RUNS.items():
        cfg = model_config(model, small_config(**{"train.epochs": 1}))  # the model's recipe, then small
        if "model.features" in flat:
            flat = {**flat, "model.features": str(root / flat["model.features"])}
        train(cfg.replace(**{"model.hidden": (32,), "model.latent_dim": 2, **flat}), out=root / name)
    return root


def card_of(page: str) -> str | None:
    m = re.search(r'<figure class="card" id="label-manifold">(.*?)</figure>', page, re.S)
    return None if m is None else m.group(1)


def views_of(card: str) -> list[tuple[str, bool, np.ndarray]]:
    """(value, hidden, pixels) of each view, in order."""
    out = []
    for value, hidden, uri in re.findall(
        r'<div data-view="([^"]*)"( hidden)?><img src="data:image/png;base64,([^"]*)"', card
    ):
        with Image.open(io.BytesIO(base64.b64decode(uri))) as im:
            out.append((value, bool(hidden), np.asarray(im)))
    return out


def grid_by_hand(n: int) -> torch.Tensor:
    """z of the n x n grid at Gaussian quantiles of z[0], z[1]: row r, column c is (Phi^-1((c + 1/2) / n),
    Phi^-1((n - r - 1/2) / n)), rows top to bottom, in row-major order."""
    q = norm.ppf((np.arange(n) + 0.5) / n)
    return torch.tensor([[q[c], q[n - 1 - r]] for r in range(n) for c in range(n)], dtype=torch.float32)


def canvas_by_hand(pictures: torch.Tensor, n: int) -> np.ndarray:
    """round(255 x) of n x n pictures [n * n, 1, H, W] laid out row by row without gaps."""
    h, w = pictures.shape[-2:]
    canvas = np.zeros((n * h, n * w))
    for i, p in enumerate(pictures[:, 0].numpy()):
        r, c = divmod(i, n)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = p
    return np.rint(canvas * 255)


def decode_at(model, z: torch.Tensor, y: int) -> torch.Tensor:
    with torch.no_grad():
        return model.decode(z, torch.full(z.shape[:-1], y)).mean.clamp(0, 1)


@pytest.mark.parametrize("kind", ["cvae", "m2", "adgm", "m1m2"])
def test_the_report_holds_the_decoded_grid_at_every_label(runs, kind):
    page = build_report(runs / kind)
    card = card_of(page)
    assert card is not None and "<h3>Latent manifold</h3>" in card
    options = re.findall(r'<option value="([^"]*)">', card)
    assert options == [str(k) for k in range(10)]  # labels 0..C-1
    views = views_of(card)
    assert [v for v, _, _ in views] == options
    assert [hidden for _, hidden, _ in views] == [False] + [True] * 9  # without script: label 0's picture
    model = open_run(str(runs / kind)).model
    z = grid_by_hand(20)
    for y, _, pixels in views:
        want = canvas_by_hand(decode_at(model, z, int(y)), 20)
        assert pixels.shape == want.shape == (160, 160)  # 20 x 20 digits of 8 x 8, one pixel each
        diff = np.abs(pixels.astype(float) - want)
        assert diff.max() <= 1 and diff.mean() < 0.01, y  # float32 vs float64 quantiles: one level at most
    assert len({v[2].tobytes() for v in views}) == 10  # the picture follows the label
    # the selector sits beside the card's title; the plane and where its codes come from are stated
    at = "at their own labels" if kind == "cvae" else "at their classifier's labels argmax q(y|x)"
    text = html.unescape(card)
    assert f"q(z|x,y) of the test images {at}" in text and "z[0], z[1] at Gaussian quantiles" in text


def test_an_unlabelled_report_has_no_selector(runs):
    page = build_report(runs / "vae")
    assert card_of(page) is None
    assert "<select" not in page and "<script" not in page and "data-view" not in page
    assert page.count("<h3>Latent manifold</h3>") == 1  # its own manifold, one picture


@pytest.mark.parametrize(("kind", "own"), [("cvae3", True), ("m2-3", False)])
def test_a_3d_plane_is_the_principal_plane_of_the_codes_at_their_labels(runs, kind, own):
    o = open_run(str(runs / kind))
    model, test = o.model, o.split("test")
    x = test.batch(slice(None))
    with torch.no_grad():
        y = test.labels.long() if own else model.classify(x).probs.argmax(-1)
        z = model.encode(x, y).mean
    assert torch.allclose(label_codes(model, test), z, atol=1e-6)
    m = label_manifold(model, test, n=6)
    assert m.what.startswith("top two principal directions of the test codes")
    centred = z - z.mean(0)
    evals, evecs = torch.linalg.eigh(centred.T @ centred / (len(z) - 1))
    top = evecs[:, -2:]  # the plane of the two largest variances
    grid = m.z - z.mean(0)
    assert torch.allclose(grid - grid @ top @ top.T, torch.zeros_like(grid), atol=1e-4)  # in that plane
    coords = grid @ top  # the corners sit at the extreme quantiles times the spread along each axis
    assert torch.allclose(coords.abs().max(0).values, norm.ppf(1 - 0.5 / 6) * evals[-2:].sqrt(), rtol=1e-3)
    page = build_report(runs / kind)
    for label, _, pixels in views_of(card_of(page)):  # the report's pictures decode this grid
        pictures = decode_at(model, label_manifold(model, test, n=20).z, int(label))
        assert np.abs(pixels.astype(float) - canvas_by_hand(pictures, 20)).max() <= 1


def test_a_test_split_that_cannot_be_loaded_is_the_cards_note(runs, tmp_path):
    model = open_run(str(runs / "cvae")).model

    def missing():
        raise DataError("digits was not found in /nowhere")

    card = label_manifold_card(model, missing, tmp_path)
    assert "not drawn: digits was not found in /nowhere" in card and "<select" not in card
    assert why_no_label_manifold(model) is None
    assert why_no_label_manifold(open_run(str(runs / "vae")).model) == (
        "VAE takes no label y: its decoder maps z alone"
    )


@pytest.mark.parametrize("kind", ["cvae", "m2"])
def test_manifold_label_draws_the_grid_at_that_label(runs, kind, tmp_path, capsys):
    run = runs / kind
    assert main(["manifold", str(run), "--label", "3", "-n", "6", "--threads", "1"]) == 0
    path = run / "figures" / "manifold-y3.png"
    assert capsys.readouterr().out.strip() == f"wrote {path}"
    o = open_run(str(run))
    test = o.split("test")
    want = label_manifold_figure(o.model, test, tmp_path / "want.png", 3, n=6)
    assert path.read_bytes() == want.read_bytes()  # the figure of label 3 at n = 6
    other = label_manifold_figure(o.model, test, tmp_path / "other.png", 4, n=6)
    assert other.read_bytes() != want.read_bytes()
    # and what that figure shows: each cell is the decode of its grid point at label 3
    m = label_manifold(o.model, test, n=6, labels=(3,))
    assert torch.allclose(m.z, grid_by_hand(6), atol=1e-5)
    assert torch.equal(m.tiles[0], decode_at(o.model, m.z, 3))
    assert not torch.allclose(m.tiles[0], decode_at(o.model, m.z, 4))


def test_manifold_label_honours_out_dims_and_range(runs, tmp_path, capsys):
    out = tmp_path / "m.png"
    argv = ["manifold", str(runs / "cvae3"), "--label", "2", "--dims", "0,2", "--range", "codes", "-n", "4"]
    assert main([*argv, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    o = open_run(str(runs / "cvae3"))
    want = label_manifold_figure(o.model, o.split("test"), tmp_path / "w.png", 2, 4, (0, 2), "codes")
    assert out.read_bytes() == want.read_bytes()
    m = label_manifold(o.model, o.split("test"), 4, (0, 2), "codes", labels=(2,))
    assert torch.equal(m.z[:, 1], torch.zeros(16))  # z[1] stays at the prior's centre


@pytest.mark.parametrize(
    ("kind", "flags", "says"),
    [
        ("cvae", ["--label", "10"], "--label must be a label 0..9 of CVAE, got 10"),
        ("m2", ["--label", "-1"], "--label must be a label 0..9 of M2, got -1"),
        ("cvae", [], "CVAE's decoder takes a label y: give --label Y (0..9)"),
        ("vae", ["--label", "2"], "--label 2: VAE takes no label y (its decoder maps z alone)"),
    ],
)
def test_bad_labels_are_one_line(runs, kind, flags, says, capsys, one_line_error):
    before = sorted((runs / kind / "figures").glob("*"))
    code = main(["manifold", str(runs / kind), *flags])
    one_line_error(capsys, code, f"vaelab manifold: error: {runs / kind}: {says}")
    assert sorted((runs / kind / "figures").glob("*")) == before  # nothing written


def test_a_label_that_is_not_a_number_is_a_usage_error(runs, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["manifold", str(runs / "cvae"), "--label", "three"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "vaelab manifold: error: argument --label: invalid int value: 'three'"
    )
