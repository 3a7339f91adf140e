"""PixelCNN: causal masks (a gradient test), a normalised density (sum over a whole binary space), exact
window logits, samples from the model, exact evaluation, training and checkpoints."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.stats import chi2

from vaelab.baselines.pixelcnn import PixelCNN, causal_mask
from vaelab.config import ModelConfig
from vaelab.errors import ConfigError, DataError
from vaelab.evaluate.loglik import importance_sampling


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is faster than two on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(shape, scale=1.0, seed=0, **extra) -> PixelCNN:
    """A small PixelCNN with its weights scaled up so that its conditionals are far from uniform."""
    torch.manual_seed(seed)
    m = PixelCNN(ModelConfig(extra={"channels": 8, "blocks": 2, "first_kernel": 3, **extra}), shape)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m.double().eval()


def all_images(shape) -> torch.Tensor:
    """Every binary image of `shape`, [2^n, C, H, W]."""
    n = math.prod(shape)
    bits = torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), dtype=torch.float64)
    return bits.view(-1, *shape)


def raster(shape) -> torch.Tensor:
    """Position of every (c, i, j) in the model's order: pixels in raster order, channels inner."""
    c, h, w = shape
    ci, ii, jj = torch.meshgrid(torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij")
    return (ii * w + jj) * c + ci


@pytest.mark.parametrize(("shape", "extra"), [((1, 4, 5), {}), ((2, 3, 4), {"first_kernel": 5})])
def test_no_output_depends_on_its_own_or_later_pixels(shape, extra):
    m = make(shape, **extra)
    x = torch.rand(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    jac = torch.func.jacrev(lambda v: m.logits(v)[0])(x)[:, :, :, 0]  # [C,H,W, C,H,W]
    order = raster(shape).flatten()
    jac = jac.reshape(order.numel(), order.numel())
    later_or_self = order[None, :] >= order[:, None]  # [output, input]
    assert (jac[later_or_self] == 0).all()
    # ...and every output after the first does see earlier pixels (the masks do not cut everything)
    sees = (jac != 0).any(1)
    assert sees[order > 0].all() and not sees[order == 0].any()


def test_a_mask_that_lets_a_pixel_see_itself_is_caught():
    """The gradient test's negative control: mask B in the first layer leaks x_i into its own conditional."""
    leak = causal_mask(8, 1, 3, "B")
    assert leak[:, :, 1, 1].sum() > 0 and causal_mask(8, 1, 3, "A")[:, :, 1, 1].sum() == 0
    m = make((1, 3, 3))
    m.first.mask.copy_(leak)
    x = torch.rand(1, 1, 3, 3, dtype=torch.float64)
    jac = torch.func.jacrev(lambda v: m.logits(v)[0])(x)[:, :, :, 0].reshape(9, 9)
    assert (jac.diagonal() != 0).any()


@pytest.mark.parametrize(("shape", "extra"), [((1, 3, 3), {}), ((2, 2, 2), {})])
def test_probabilities_sum_to_one_over_every_binary_image(shape, extra):
    m = make(shape, scale=3.0, **extra)
    with torch.no_grad():
        log_p = m.exact_log_px(all_images(shape))
    assert log_p.max() - log_p.min() > 1.0  # far from uniform
    assert torch.logsumexp(log_p, 0).item() == pytest.approx(0.0, abs=1e-9)
    m.first.mask.copy_(causal_mask(8, shape[0], 3, "B", shape[0]))  # a leaking mask breaks normalisation
    with torch.no_grad():
        assert abs(torch.logsumexp(m.exact_log_px(all_images(shape)), 0).item()) > 1e-3


def test_window_logits_equal_the_full_pass_at_every_pixel():
    m = make((2, 5, 6), scale=2.0, first_kernel=5)
    x = torch.rand(3, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = m.logits(x)
        for i, j in itertools.product(range(5), range(6)):
            torch.testing.assert_close(m.pixel_logits(x, i, j), full[:, :, i, j], rtol=0, atol=1e-12)


def test_samples_follow_the_model_on_a_whole_space():
    """Frequencies of 20,000 samples on the 16 images of a 2x2 space against exp(log p(x)): chi-square."""
    shape = (1, 2, 2)
    m = make(shape, scale=3.0).float()
    n = 20_000
    x = m.generate(n, torch.Generator().manual_seed(3))
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    codes = (x.flatten(1) * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()
    observed = torch.bincount(codes, minlength=16).double()
    with torch.no_grad():
        expected = m.exact_log_px(all_images(shape).float()).double().exp() * n
    stat = ((observed - expected) ** 2 / expected).sum().item()
    assert stat < chi2.ppf(0.999, df=15)


def test_importance_sampling_returns_the_exact_value(gen):
    m = make((1, 4, 4), scale=2.0).float()
    x = torch.bernoulli(torch.full((7, 1, 4, 4), 0.3), generator=gen)
    res = importance_sampling(m, x, 20, gen, chunk=7)
    torch.testing.assert_close(res.log_px, m.exact_log_px(x).double().detach(), rtol=0, atol=1e-5)
    torch.testing.assert_close(res.ess, torch.full((7,), 20.0, dtype=torch.float64))


def test_grey_pixels_and_bad_settings_are_refused():
    m = make((1, 4, 4)).float()
    with pytest.raises(DataError, match="binary pixels"):
        m.exact_log_px(torch.full((1, 1, 4, 4), 0.5))
    with pytest.raises(ConfigError, match="bernoulli"):
        PixelCNN(ModelConfig(likelihood="gaussian"), (1, 4, 4))
    with pytest.raises(ConfigError, match="unknown key"):
        PixelCNN(ModelConfig(extra={"layers": 3}), (1, 4, 4))
    with pytest.raises(ConfigError, match="odd"):
        PixelCNN(ModelConfig(extra={"first_kernel": 4}), (1, 4, 4))
