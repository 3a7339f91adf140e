"""Every figure on test splits of 1, 2, 3 and 7 images (a folder of 10 to 70 pictures): each draws with what
it has (fewer pairs, fewer rows, a fallback plane) or says in one line why it cannot (issue 22, item 1:
interpolations of a 6-image split raised a tensor-size RuntimeError, the manifold of 2 images IndexError)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.data import prepare_split
from vaelab.models.registry import build_model
from vaelab.viz import figures as fig
from vaelab.viz.figureset import FIGURES, draw_figures, skipped_lines
from vaelab.viz.grids import NotDrawn, plt

from vaelab_testing import small_config

SIZES = (1, 2, 3, 7)


@pytest.fixture
def decoded_z(monkeypatch):
    """Every batch of z the figures decode, in order."""
    seen: list[torch.Tensor] = []
    real = fig.decoded

    def decoded(model, z):
        seen.append(z.clone())
        return real(model, z)

    monkeypatch.setattr(fig, "decoded", decoded)
    return seen


@pytest.fixture
def axes_of(monkeypatch):
    """The first axes of the figure each plot would save (then closed, not saved)."""
    seen: dict = {}

    def save_figure(f, path):
        seen["ax"] = f.axes[0]
        plt.close(f)
        return path

    monkeypatch.setattr(fig, "save_figure", save_figure)
    return seen


def _colours(ax) -> set[tuple]:
    """The distinct colours a scatter maps its points' values to."""
    sc = ax.collections[0]
    return {tuple(np.round(c[:3], 4)) for c in sc.to_rgba(sc.get_array())}


def _model(name: str = "vae", latent: int = 2):
    cfg = small_config(**{"model.name": name, "model.latent_dim": latent})
    torch.manual_seed(0)
    test = prepare_split(cfg.data, "test")
    return build_model(cfg.model, test.shape).eval(), test


def _first(test, k: int):
    """The first k images (and labels) of a split, as a split."""
    return dataclasses.replace(test, images=test.images[:k], labels=test.labels[:k])


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


@pytest.mark.parametrize("k", SIZES)
def test_interpolations_use_as_many_pairs_as_the_split_has(k, decoded_z, tmp_path):
    model, test = _model()
    small = _first(test, k)
    if k == 1:
        with pytest.raises(NotDrawn) as e:
            fig.interpolations_figure(model, small, tmp_path / "i.png")
        assert str(e.value) == "interpolations need two test images, and digits/test has 1 image"
        assert not (tmp_path / "i.png").exists()
        return
    fig.interpolations_figure(model, small, tmp_path / "i.png", pairs=6, steps=10)
    pairs = k // 2  # 2 and 3 images: one pair; 7: three
    assert [len(z) for z in decoded_z] == [pairs * 10, pairs * 10]  # linear, spherical
    with torch.inference_mode():
        ends = model.encode(small.batch(slice(0, k))).mean
    start = decoded_z[0].reshape(pairs, 10, 2)[:, 0]
    assert all(any(torch.allclose(s, e) for e in ends) for s in start)  # each path starts at a test code
    assert _png_size(tmp_path / "i.png")[0] > 100


@pytest.mark.parametrize("k", SIZES)
def test_the_manifold_of_a_5d_latent_space_falls_back_to_the_prior_plane_below_three_codes(
    k, decoded_z, tmp_path
):
    """Principal directions need three codes that differ; below that a model with a prior shows z[0], z[1]."""
    model, test = _model(latent=5)
    centre, axes, scales, what = fig.manifold_plane(model, _first(test, k))
    if k < 3:
        assert what == f"z[0], z[1] at Gaussian quantiles ({k} test codes span fewer than two directions)"
        assert torch.equal(axes, torch.eye(5)[:2]) and torch.equal(scales, torch.ones(2))
        assert torch.equal(centre, torch.zeros(5))
    else:
        assert what.startswith("top two principal directions")
        assert axes.shape == (2, 5) and bool((scales > 0).all())
    fig.manifold_figure(model, _first(test, k), tmp_path / "m.png", n=4)
    assert decoded_z[-1].shape == (16, 5)


@pytest.mark.parametrize("k", (1, 2, 3))
def test_an_autoencoder_manifold_needs_codes_that_spread(k, tmp_path):
    """Without a prior the plane is placed by the test codes themselves: 1 code has no spread (D = 2), and
    fewer than 3 codes span no plane (D = 5). Each says so in one line; else it is drawn."""
    for latent, least in ((2, 2), (5, 3)):
        model, test = _model("autoencoder", latent)
        path = tmp_path / f"m{latent}.png"
        if k < least:
            with pytest.raises(NotDrawn) as e:
                fig.manifold_figure(model, _first(test, k), path)
            assert (
                "\n" not in str(e.value) and "Autoencoder" in str(e.value) and f"need {least}" in str(e.value)
            )
            assert not path.exists()
        else:
            assert _png_size(fig.manifold_figure(model, _first(test, k), path, n=4))[0] > 100


def test_a_1d_latent_space_gives_a_strip_manifold_and_scatter(decoded_z, tmp_path):
    model, test = _model(latent=1)
    n = 9
    fig.manifold_figure(model, _first(test, 3), tmp_path / "m.png", n=n)
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.5 / n, 1 - 0.5 / n, n))
    torch.testing.assert_close(decoded_z[0], q[:, None])  # one row: z[0] at the quantiles of p(z)
    for k in SIZES:
        assert _png_size(fig.latents_figure(model, _first(test, k), tmp_path / f"l{k}.png"))[0] > 100


@pytest.mark.parametrize("k", SIZES)
def test_latents_of_a_5d_space_with_fewer_codes_than_two_components(k, tmp_path, axes_of):
    model, test = _model(latent=5)
    fig.latents_figure(model, _first(test, k), tmp_path / "l.png")
    ax = axes_of["ax"]
    assert ax.get_title() == f"posterior means of {k} image{'s' if k > 1 else ''} of digits/test"
    if k <= 2:  # k points span k - 1 directions
        assert ax.get_ylabel() == f"PC2 (none: {k} codes span {k - 1})"
    else:
        assert ax.get_ylabel().startswith("PC2 (") and "of variance" not in ax.get_ylabel()
        assert "of variance" in ax.get_xlabel()
    offsets = ax.collections[0].get_offsets()
    assert len(offsets) == k and np.isfinite(np.asarray(offsets)).all()


@pytest.mark.parametrize("k", SIZES)
def test_every_figure_of_a_run_is_drawn_or_named_in_one_line(k, tmp_path):
    """draw_figures (`vaelab figures`, the end of training, the report): one figure that cannot be drawn
    never stops the others."""
    model, test = _model(latent=16)
    history = [{"epoch": 1, "train_elbo": -40.0, "test_elbo": -41.0, "train_kl": 2.0}]
    drawn, skipped = draw_figures(model, tmp_path, _first(test, k), history=history)
    expected = set(FIGURES) - ({"interpolations"} if k == 1 else set())
    assert set(drawn) == expected
    assert {p.name for p in tmp_path.iterdir()} == {f"{name}.png" for name in expected}
    if k == 1:
        assert skipped_lines(skipped) == [
            "not drawn (interpolations need two test images, and digits/test has 1 image): interpolations"
        ]
    else:
        assert skipped == {}


def test_an_empty_split_is_one_line_per_figure(tmp_path):
    model, test = _model()  # D = 2 with a prior: the manifold needs no test codes
    drawn, skipped = draw_figures(model, tmp_path, _first(test, 0))
    assert set(drawn) == {"samples", "manifold"}
    assert skipped == {
        "reconstructions": "reconstructions need a test image, and digits/test has none",
        "interpolations": "interpolations need two test images, and digits/test has 0 images",
        "latents": "the latent scatter needs a test image, and digits/test has none",
        "curves": "no metrics yet: the run has not finished an epoch",
    }


def test_more_than_ten_labels_get_distinct_colours_and_one_label_one(tmp_path, axes_of):
    """tab10 with vmax 9.5 painted labels 10, 11, ... in label 9's colour."""
    model, test = _model()
    for classes in (12, 25, 1):
        labelled = dataclasses.replace(test, labels=torch.arange(len(test)) % classes)
        fig.latents_figure(model, labelled, tmp_path / "l.png")
        assert len(_colours(axes_of["ax"])) == classes
