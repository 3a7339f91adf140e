"""What the figures decode, checked on the arrays handed to the plotting code: the manifold's grid of z at
Gaussian quantiles (or on the test codes' top two principal directions), and the denoising panels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from vaelab.data import prepare_split
from vaelab.models.registry import build_model
from vaelab.objectives.noise import corrupt
from vaelab.viz import figures as fig
from vaelab.viz.grids import tile

from vaelab_testing import small_config


@pytest.fixture
def captured(monkeypatch):
    """The panels and the z's each figure would draw, instead of drawing them."""
    seen = {"z": [], "panels": None}
    real_decoded = fig.decoded

    def decoded(model, z):
        seen["z"].append(z.clone())
        return real_decoded(model, z)

    def save_panels(path, panels, title=None, inches=4.5):
        seen["panels"] = panels
        return path

    monkeypatch.setattr(fig, "decoded", decoded)
    monkeypatch.setattr(fig, "save_panels", save_panels)
    return seen


def _model_and_test(latent: int):
    cfg = small_config(**{"model.latent_dim": latent})
    torch.manual_seed(0)
    test = prepare_split(cfg.data, "test")
    return build_model(cfg.model, test.shape).eval(), test


def test_manifold_of_a_2d_latent_is_the_grid_of_gaussian_quantiles(captured, tmp_path):
    model, test = _model_and_test(2)
    n = 7
    fig.manifold_figure(model, test, tmp_path / "m.png", n=n)
    z = captured["z"][0].reshape(n, n, 2)  # rows top to bottom, columns left to right
    q = norm.ppf((np.arange(n) + 0.5) / n)
    np.testing.assert_allclose(z[0, :, 0].numpy(), q, rtol=0, atol=1e-5)  # z[0] rises along a row
    np.testing.assert_allclose(z[:, 0, 1].numpy(), q[::-1], rtol=0, atol=1e-5)  # z[1] falls down a column
    assert torch.all(z[:, :, 0] == z[:1, :, 0]) and torch.all(z[:, :, 1] == z[:, :1, 1])
    assert captured["panels"][0][1].shape == (n * 8, n * 8)  # 8x8 digits, no padding


def test_manifold_of_a_higher_latent_lies_on_the_codes_principal_plane(captured, tmp_path):
    model, test = _model_and_test(5)
    codes = fig.codes(model, test).double().numpy()
    n = 5
    fig.manifold_figure(model, test, tmp_path / "m.png", n=n)
    z = captured["z"][0].double().numpy()
    centre = codes.mean(0)
    _, s, vt = np.linalg.svd(codes - centre, full_matrices=False)
    # z - centre lies in the span of the top two principal directions, at quantiles times their std
    coef = (z - centre) @ vt[:2].T
    np.testing.assert_allclose(coef @ vt[:2] + centre, z, atol=1e-5)
    scale = s[:2] / math.sqrt(len(codes) - 1)  # the codes' std along each direction (axes' signs may differ)
    q = np.abs(norm.ppf((np.arange(n) + 0.5) / n))
    coef = np.abs(coef.reshape(n, n, 2)) / scale
    np.testing.assert_allclose(coef[:, :, 0], np.broadcast_to(q, (n, n)), atol=1e-4)
    np.testing.assert_allclose(coef[:, :, 1], np.broadcast_to(q[:, None], (n, n)), atol=1e-4)


def test_denoising_panels_show_the_corrupted_input_and_its_reconstruction(captured, tmp_path):
    model, test = _model_and_test(2)
    n, share, seed = 36, 0.5, 3
    fig.reconstructions_figure(model, test, tmp_path / "r.png", n=n, noise=("masking", share), seed=seed)
    (t0, clean), (t1, noisy), (t2, rec) = captured["panels"]
    assert (t0, t1, t2) == ("input", "masking noise 0.5 (encoder input)", "reconstruction")
    x = test.batch(slice(0, n))
    seen = corrupt(x, "masking", share, torch.Generator().manual_seed(seed))
    np.testing.assert_array_equal(clean, tile(x, 6))
    np.testing.assert_array_equal(noisy, tile(seen, 6))
    with torch.inference_mode():
        expected = fig.decoded(model, model.encode(seen).mean)
        from_clean = fig.decoded(model, model.encode(x).mean)
    np.testing.assert_allclose(rec, tile(expected, 6), atol=1e-6)
    assert not np.allclose(rec, tile(from_clean, 6), atol=1e-3)  # the encoder saw the corrupted copy
    on = x > 0
    kept = float((seen[on] > 0).float().mean())
    se = math.sqrt(share * (1 - share) / int(on.sum()))
    assert abs(kept - (1 - share)) < 4 * se  # masking removes each pixel with probability `share`
