"""The manifold says when it cannot be trusted: codes that do not cover the prior it is gridded at
(`prior_coverage`, `grid_range="codes"`), and tiles that are noise (`manifold_smoothness`), checked with
synthetic decoders on non-square 28x20 frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from vaelab.data import prepare_split
from vaelab.models.registry import build_model
from vaelab.viz import figures as fig
from vaelab.viz.trust import NOISY, manifold_notes, manifold_smoothness, prior_coverage, speckle

from vaelab_testing import small_config

H, W = 28, 20  # Frey Face frames: not square


def _grid(n: int) -> torch.Tensor:
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.5 / n, 1 - 0.5 / n, n))
    u, v = torch.meshgrid(q, q.flip(0), indexing="xy")
    return torch.stack([u.reshape(-1), v.reshape(-1)], 1)


def smooth_decoder(z: torch.Tensor) -> torch.Tensor:
    """A blob whose place follows z: what a trained decoder's pose and expression changing by degrees is like."""
    rows = torch.arange(H, dtype=torch.float64)[:, None]
    cols = torch.arange(W, dtype=torch.float64)[None, :]
    cy = H / 2 + 4 * z[:, 1, None, None].double()
    cx = W / 2 + 3 * z[:, 0, None, None].double()
    return torch.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / 18)[:, None]


def noise_decoder(z: torch.Tensor) -> torch.Tensor:
    """Speckle: every tile its own random image, unrelated to its neighbours."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(len(z), 1, H, W, generator=g, dtype=torch.float64)


def test_smoothness_is_exact_on_a_strip_of_numbers():
    # neighbours differ by 1, 1; all pairs by 1, 4, 1 (mean 2)
    assert manifold_smoothness(torch.tensor([[0.0], [1.0], [2.0]]), 3) == pytest.approx(0.5)
    assert manifold_smoothness(torch.ones(9, 1, H, W), 3) == 0.0


@pytest.mark.parametrize("n", [5, 20])
def test_a_smooth_manifold_passes_and_noise_fails(n):
    smooth = manifold_smoothness(smooth_decoder(_grid(n)), n)
    noisy = manifold_smoothness(noise_decoder(_grid(n)), n)
    assert smooth < 0.25 < NOISY < 0.9 < noisy < 1.1, (smooth, noisy)


def test_codes_off_the_prior_are_named_and_codes_on_it_are_not():
    g = torch.Generator().manual_seed(0)
    on = torch.randn(500, 2, generator=g)
    assert prior_coverage(on) == ""
    # the 300-epoch run: a 0.5 x 0.1 patch about (-0.9, 3.16)
    patch = torch.tensor([-0.9, 3.16]) + torch.randn(500, 2, generator=g) * torch.tensor([0.5, 0.1]) / 4
    assert "do not cover the prior" in prior_coverage(patch)
    assert "mean -0.9" in prior_coverage(patch)
    assert "do not cover the prior" in prior_coverage(on * 0.2)  # centred, but a fifth of the prior's spread
    assert prior_coverage(on * 0.3) == ""


@pytest.fixture
def drawn(monkeypatch):
    """A 2-d VAE whose test codes are the issue's patch; the z's decoded and the title, instead of a PNG."""
    cfg = small_config(**{"model.latent_dim": 2})
    torch.manual_seed(0)
    test = prepare_split(cfg.data, "test")
    model = build_model(cfg.model, test.shape).eval()
    g = torch.Generator().manual_seed(1)
    patch = torch.tensor([-0.9, 3.16]) + torch.randn(len(test), 2, generator=g) * torch.tensor([0.125, 0.025])
    seen: dict = {"z": None, "title": None, "decoder": smooth_decoder}
    monkeypatch.setattr(fig, "codes", lambda model, data, limit=None, batch_size=1000: patch[:limit])

    def decoded(model, z):
        seen["z"] = z.clone()
        return seen["decoder"](z).float()

    def save_panels(path, panels, title=None, inches=4.5):
        seen["title"] = title
        seen["shape"] = panels[0][1].shape
        return path

    monkeypatch.setattr(fig, "decoded", decoded)
    monkeypatch.setattr(fig, "save_panels", save_panels)
    return model, test, patch, seen


def test_a_prior_grid_over_codes_that_miss_it_says_so_in_its_title(drawn, tmp_path):
    model, test, _, seen = drawn
    fig.manifold_figure(model, test, tmp_path / "m.png", n=6)
    assert "do not cover the prior" in seen["title"] and "--range codes" in seen["title"]
    assert "smoothness" not in seen["title"]  # the decoder is smooth
    assert seen["shape"] == (6 * H, 6 * W)


def test_the_codes_range_grids_over_the_codes_quantiles_and_says_nothing_more(drawn, tmp_path):
    model, test, patch, seen = drawn
    n = 5
    fig.manifold_figure(model, test, tmp_path / "m.png", n=n, grid_range="codes")
    z = seen["z"].reshape(n, n, 2).double().numpy()
    q = norm.ppf((np.arange(n) + 0.5) / n)
    mean, sd = patch.double().mean(0).numpy(), patch.double().std(0).numpy()
    np.testing.assert_allclose(z[0, :, 0], mean[0] + q * sd[0], atol=1e-5)
    np.testing.assert_allclose(z[:, 0, 1], mean[1] + q[::-1] * sd[1], atol=1e-5)
    assert seen["title"] == "latent manifold"


def test_a_manifold_of_noise_says_so_in_its_title(drawn, tmp_path):
    model, test, _, seen = drawn
    seen["decoder"] = noise_decoder
    fig.manifold_figure(model, test, tmp_path / "m.png", n=6, grid_range="codes")
    assert "neighbouring tiles differ almost like random pairs" in seen["title"]


def test_an_unknown_range_is_refused_with_the_choices(drawn, tmp_path):
    model, test, _, _ = drawn
    with pytest.raises(ValueError, match="unknown manifold range 'data'; choose one of: prior, codes"):
        fig.manifold_figure(model, test, tmp_path / "m.png", n=4, grid_range="data")


def test_speckle_is_exact_on_a_small_case_and_tells_noise_from_faces():
    flat = torch.zeros(1, 1, 2, 2)
    edge = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # across: 1 and 1; down: 0 and 0 -> (1 + 0) / 2
    checker = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])  # across 1, down 1 -> 1
    assert speckle(checker, edge) == pytest.approx(2.0)
    assert speckle(flat, edge) == 0.0
    g = torch.Generator().manual_seed(2)
    faces = smooth_decoder(torch.randn(200, 2, generator=g))
    assert speckle(smooth_decoder(_grid(10)), faces) < 1.5
    assert speckle(noise_decoder(_grid(10)), faces) > 10


def test_the_notes_name_each_way_a_grid_fails():
    g = torch.Generator().manual_seed(3)
    faces = smooth_decoder(torch.randn(200, 2, generator=g))
    assert manifold_notes(smooth_decoder(_grid(8)), 8, torch.randn(300, 2, generator=g), faces) == []
    notes = manifold_notes(noise_decoder(_grid(8)), 8, torch.randn(300, 2, generator=g) * 0.1, faces)
    assert len(notes) == 3
    assert "do not cover the prior" in notes[0]
    assert "differ almost like random pairs" in notes[1]
    assert notes[2].startswith("the tiles are speckle: pixel to pixel they change")
