"""Analogies (Kingma et al. 2014, figure 1; `vaelab.viz.analogies`): cell (r, k) is the mean of p(x | z_r, y=k)
with z_r the mean of q(z | x_r, y_r), y_r the image's own label (a conditional model) or its classifier's
(a model that classifies); written against the model contract, so a labelled model vaelab does not know draws
it too, and a model without a label is refused in one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.distributions import Categorical, Independent, Normal

from vaelab.config import Config
from vaelab.data import Prepared
from vaelab.models.cvae import CVAE
from vaelab.models.m2 import M2
from vaelab.models.vae import VAE
from vaelab.viz.analogies import (
    FLAT,
    GAP,
    IGNORED_LABEL,
    Analogies,
    analogies,
    analogies_figure,
    analogy_canvas,
    figure_title,
    label_effect,
    pick_rows,
    spreads,
    why_no_analogies,
)
from vaelab.viz.grids import GRID_SIDE, NotDrawn

SHAPE = (1, 8, 8)


def model_cfg(**kw):
    return dataclasses.replace(Config().model, hidden=(16,), latent_dim=3, **kw)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed)).round()


def split(n: int, labels: bool = True, classes: int = 10) -> Prepared:
    x = (images(n) * 255).to(torch.uint8)
    y = torch.arange(n) % classes if labels else None
    return Prepared(x, y, "none", False, "tiny")


class ToyConditional(nn.Module):
    """A labelled model vaelab does not know, with closed forms: q(z|x,y) = N(mean(x) + y, 1) in 2-d and
    p(x|z,y) = N(sigmoid(z0 - z1 + y / 2), 1) at every pixel."""

    conditional = True

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.num_classes, self.latent_dim = classes, 2
        self.w = nn.Parameter(torch.zeros(1))

    def prior(self):
        return Independent(Normal(torch.zeros(2), torch.ones(2)), 1)

    def encode(self, x, y):
        m = x.flatten(1).mean(1) + y.float()
        loc = torch.stack([m, -m], -1)
        return Independent(Normal(loc, torch.ones_like(loc)), 1)

    def decode(self, z, y):
        v = torch.sigmoid(z[..., 0] - z[..., 1] + y.float() / 2)
        mean = v[..., None, None, None].expand(*v.shape, *SHAPE)
        return Independent(Normal(mean, torch.ones_like(mean)), 3)


class ToyClassifier(ToyConditional):
    """The same with a classifier, q(y|x) certain of label 2 - (first pixel), and encode(x, y=None) allowed."""

    conditional = False

    def classify(self, x):
        k = 2 - x.flatten(1)[:, 0].long()
        return Categorical(logits=torch.nn.functional.one_hot(k, self.num_classes).float() * 50)

    def encode(self, x, y=None):
        return super().encode(x, y)


def test_toy_conditional_cells_are_the_closed_form():
    """z_r = (m_r + y_r, -(m_r + y_r)) with m_r the image's mean, so cell (r, k) is sigmoid(2 (m_r + y_r) + k/2)
    at every pixel: a model known only through its contract."""
    model = ToyConditional()
    x, y = images(4), torch.tensor([0, 2, 1, 2])
    a = analogies(model, x, y)
    m = x.flatten(1).mean(1) + y
    want = torch.sigmoid(2 * m[:, None] + torch.arange(3)[None] / 2)  # [R, K]
    assert a.images.shape == (4, 3, *SHAPE) and not a.predicted
    torch.testing.assert_close(a.images, want[..., None, None, None].expand(4, 3, *SHAPE), rtol=0, atol=1e-6)
    assert torch.equal(a.labels, y) and torch.equal(a.inputs, x)
    torch.testing.assert_close(a.styles, torch.stack([m, -m], -1))


def test_toy_classifier_takes_its_style_at_the_classifiers_label_not_the_given_one():
    model = ToyClassifier()
    x = images(6, seed=3)
    a = analogies(model, x, torch.zeros(6, dtype=torch.long))  # the given labels are not used
    want_y = 2 - x.flatten(1)[:, 0].long()
    assert a.predicted and torch.equal(a.labels, want_y)
    torch.testing.assert_close(a.styles[:, 0], x.flatten(1).mean(1) + want_y)


@pytest.mark.parametrize("kind", ["cvae", "m2"])
def test_each_cell_is_the_decoded_mean_of_the_rows_style_at_the_columns_label(kind):
    torch.manual_seed(0)
    model = (CVAE if kind == "cvae" else M2)(model_cfg(), SHAPE).eval()
    x, y = images(5, seed=1), torch.tensor([3, 1, 4, 1, 5])
    a = analogies(model, x, y)
    with torch.no_grad():
        at = y if kind == "cvae" else model.classify(x).probs.argmax(-1)
        z = model.encode(x, at).mean
        assert torch.equal(a.labels, at) and a.predicted == (kind == "m2")
        torch.testing.assert_close(a.styles, z, rtol=0, atol=0)
        for r in range(5):
            for k in range(10):
                cell = model.decode(z[r : r + 1], torch.tensor([k])).mean[0].clamp(0, 1)
                torch.testing.assert_close(a.images[r, k], cell, rtol=0, atol=1e-6)
    assert (a.images[:, 0] - a.images[:, 9]).abs().max() > 1e-3  # the label reaches the decoder


def test_the_canvas_puts_the_test_images_then_each_label_in_its_cell():
    a = analogies(ToyConditional(classes=4), images(3), torch.tensor([0, 1, 3]))
    canvas = analogy_canvas(a)
    h, w = SHAPE[1:]
    assert canvas.shape == (3 * (h + 1) - 1, w + GAP + 4 * (w + 1) - 1)
    for r in range(3):
        top = r * (h + 1)
        np.testing.assert_array_equal(canvas[top : top + h, :w], a.inputs[r, 0].numpy())
        assert (canvas[:, w : w + GAP] == 1).all()
        for k in range(4):
            left = w + GAP + k * (w + 1)
            np.testing.assert_array_equal(canvas[top : top + h, left : left + w], a.images[r, k, 0].numpy())


def test_a_model_without_a_label_or_an_encoder_for_one_is_named_in_one_line():
    assert why_no_analogies(VAE(model_cfg(), SHAPE)) == (
        "VAE takes no label y: analogies need a model whose decoder does (cvae, m2)"
    )

    class NoEncoder(nn.Module):
        num_classes, latent_dim = 3, 2

        def decode(self, z, y):
            raise AssertionError

    assert (
        why_no_analogies(NoEncoder()) == "NoEncoder has no encoder q(z|x,y) to infer an image's style z from"
    )
    with pytest.raises(NotDrawn, match="VAE takes no label y"):
        analogies(VAE(model_cfg(), SHAPE), images(2))


def test_rows_are_distinct_seeded_test_images():
    data = split(40)
    a, b, c = pick_rows(data, 10, 0), pick_rows(data, 10, 0), pick_rows(data, 10, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(set(a.tolist())) == 10 and max(a.tolist()) < 40
    assert sorted(pick_rows(data, 100, 0).tolist()) == list(range(40))  # a small split: all of it


def test_the_figure_is_written_atomically_with_a_row_per_image(tmp_path, capsys):
    torch.manual_seed(0)
    model = CVAE(model_cfg(), SHAPE).eval()
    heights = {}
    for rows in (2, 8):
        path = analogies_figure(model, split(30), tmp_path / f"a{rows}.png", rows=rows, seed=0)
        assert path == tmp_path / f"a{rows}.png"
        with Image.open(path) as im:
            assert im.format == "PNG"
            heights[rows] = im.size[1]
    assert heights[8] > 2 * heights[2] * 0.9  # the canvas's height grows with the rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a2.png", "a8.png"]  # no temporary file left
    analogies_figure(model, split(40), tmp_path / "many.png", rows=50)
    assert f"holds {GRID_SIDE} of the 40 rows" in capsys.readouterr().out  # rows: at most the split's, capped


def test_the_figure_says_in_one_line_what_it_lacks(tmp_path):
    cvae = CVAE(model_cfg(), SHAPE).eval()
    with pytest.raises(
        NotDrawn, match=r"^CVAE encodes q\(z\|x,y\): the analogies need the test images' labels"
    ):
        analogies_figure(cvae, split(5, labels=False), tmp_path / "a.png")
    with pytest.raises(NotDrawn, match="analogies need a test image, and tiny has none"):
        analogies_figure(cvae, split(0), tmp_path / "a.png")
    m2 = M2(model_cfg(), SHAPE).eval()  # a classifier supplies the labels: none needed
    assert analogies_figure(m2, split(5, labels=False), tmp_path / "m2.png").exists()
    assert not (tmp_path / "a.png").exists()


def cells(values: torch.Tensor) -> Analogies:
    """Analogies whose cell (r, k) is the constant picture values[r, k]."""
    r, k = values.shape
    pictures = values[..., None, None, None].expand(r, k, *SHAPE).float()
    return Analogies(images(r), pictures, torch.zeros(r, 2), torch.zeros(r, dtype=torch.long), False)


def test_the_label_effect_is_the_rms_change_along_rows_over_that_down_columns():
    """Cell (r, k) = a r + b k: along a row the RMS deviation is b std(0..K-1), down a column a std(0..R-1)."""
    r, k, a, b = torch.arange(5.0), torch.arange(10.0), 0.08, 0.01
    got = label_effect(cells(a * r[:, None] + b * k[None]))
    want = (b * k.std(unbiased=False)) / (a * r.std(unbiased=False))
    assert got == pytest.approx(float(want), rel=1e-6)
    assert label_effect(cells(torch.ones(5, 1) * k[None] / 20)) == float("inf")  # the rows do not differ


def test_the_title_notes_a_decoder_that_ignores_the_label():
    r, k = torch.arange(5.0), torch.arange(10.0)
    ignores = cells(0.08 * r[:, None] + 0.001 * k[None])
    effect = label_effect(ignores)
    assert effect < IGNORED_LABEL
    assert figure_title(ignores, 3).splitlines() == [
        "Analogies (Kingma et al. 2014, fig. 1), seed 3: each row decodes one test image's style",
        "z = mean of q(z|x,y) at its own label, at every label y",
        f"note: y changes the pictures {effect:.2f}x as much as z does: the decoder mostly ignores y",
    ]
    uses = cells(0.01 * r[:, None] + 0.08 * k[None])
    assert len(figure_title(uses, 3).splitlines()) == 2
    assert "classifier's label argmax q(y|x)" in figure_title(uses._replace(predicted=True), 0)
    flat = cells(0.5 + 0.002 * r[:, None] + 0.001 * k[None])  # an untrained decoder: one picture everywhere
    assert max(spreads(flat)) < FLAT
    assert figure_title(flat, 0).splitlines()[2] == (
        f"note: the pictures hardly change with y or z (RMS {max(spreads(flat)):.3f} of the pixel range): the "
        "decoder draws about one picture"
    )
