"""Likelihoods keep their normalising constants: checked against closed forms and by summing/integrating to 1."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate, stats

from vaelab.distributions.likelihoods import DiscretizedLogistic, build_likelihood
from vaelab.errors import ConfigError

SHAPE = (1, 2, 3)


def test_bernoulli_matches_closed_form(gen):
    lik = build_likelihood("bernoulli", SHAPE)
    logits = torch.randn(4, *SHAPE, generator=gen)
    x = torch.bernoulli(torch.full((4, *SHAPE), 0.5), generator=gen)
    p = torch.sigmoid(logits)
    expected = (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    torch.testing.assert_close(lik(logits).log_prob(x), expected)


def test_gaussian_matches_scipy(gen):
    lik = build_likelihood(
        "gaussian", SHAPE, gaussian_variance="fixed", gaussian_sigma=0.3, variance_floor=0.0
    )
    loc = torch.randn(2, *SHAPE, generator=gen, dtype=torch.float64)
    x = torch.rand(2, *SHAPE, generator=gen, dtype=torch.float64)
    expected = stats.norm.logpdf(x.numpy(), loc.numpy(), 0.3).reshape(2, -1).sum(1)
    torch.testing.assert_close(lik(loc).log_prob(x), torch.from_numpy(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["shared", "per-pixel", "decoder"])
def test_gaussian_variance_is_floored(mode):
    lik = build_likelihood("gaussian", SHAPE, gaussian_variance=mode, gaussian_sigma=0.1, variance_floor=1e-3)
    factor = 2 if mode == "decoder" else 1
    out = torch.zeros(1, factor * SHAPE[0], *SHAPE[1:])
    if mode == "decoder":
        out[:, 1:] = -1e4  # drive the predicted variance towards zero
    else:
        with torch.no_grad():
            lik.raw.fill_(-1e4)
    scale = lik(out).base_dist.scale
    torch.testing.assert_close(scale, torch.full_like(scale, math.sqrt(1e-3)))


def test_gaussian_learned_variance_starts_at_sigma():
    lik = build_likelihood(
        "gaussian", SHAPE, gaussian_variance="shared", gaussian_sigma=0.2, variance_floor=1e-4
    )
    torch.testing.assert_close(lik.variance(), torch.tensor(0.04))
    assert any(p.requires_grad for p in lik.parameters())


def test_continuous_bernoulli_integrates_to_one():
    lik = build_likelihood("continuous-bernoulli", (1, 1, 1))
    for logit in (-60.0, -20.0, -3.0, -0.2, -1e-3, 0.0, 0.7, 4.0, 16.5, 40.0):
        dist = lik(torch.tensor([[[[logit]]]], dtype=torch.float64))

        def density(v, dist=dist):
            return math.exp(float(dist.log_prob(torch.tensor([[[[v]]]], dtype=torch.float64))))

        total, _ = integrate.quad(density, 0, 1)
        assert abs(total - 1) < 1e-6


def test_continuous_bernoulli_in_float32_matches_float64_for_large_logits():
    """torch's normaliser, from float32-clamped probabilities, stopped growing past |logit| ~16 (log p(x) too
    low by log(|logit| / 15.9) a pixel); from the logits it stays within float32 rounding of float64."""
    lik = build_likelihood("continuous-bernoulli", (1, 1, 1))
    logits = torch.tensor([-50.0, -20.0, -16.0, -1e-3, 0.0, 5e-3, 0.5, 5.0, 16.0, 20.0, 50.0])
    x = torch.full_like(logits, 0.3)
    lp32 = lik(logits.view(-1, 1, 1, 1)).log_prob(x.view(-1, 1, 1, 1))
    lp64 = lik(logits.double().view(-1, 1, 1, 1)).log_prob(x.double().view(-1, 1, 1, 1))
    torch.testing.assert_close(lp32.double(), lp64, rtol=1e-5, atol=1e-5)
    eta = 50.0  # the closed form: x eta - softplus(eta) + log(eta / tanh(eta / 2))
    exact = 0.3 * eta - math.log1p(math.exp(-eta)) - eta + math.log(eta / math.tanh(eta / 2))
    assert float(lp32[-1]) == pytest.approx(exact, abs=1e-4)


def test_discretized_logistic_sums_to_one_over_256_bins(gen):
    loc = torch.tensor([0.0, 0.3, 0.97, 1.2], dtype=torch.float64)
    log_scale = torch.tensor([-4.0, -2.0, -6.0, -1.0], dtype=torch.float64)
    d = DiscretizedLogistic(loc[:, None], log_scale[:, None])
    grid = torch.arange(256, dtype=torch.float64) / 255
    total = d.log_prob(grid[None, :].expand(4, 256)).exp().sum(1)
    torch.testing.assert_close(total, torch.ones(4, dtype=torch.float64), atol=1e-6, rtol=0)


def test_discretized_logistic_samples_match_probabilities():
    d = DiscretizedLogistic(torch.tensor([0.5]), torch.tensor([-3.0]))
    g = torch.Generator().manual_seed(0)
    draws = d.sample_with((20000,), g).flatten()
    values, counts = torch.unique(draws, return_counts=True)
    p = d.log_prob(values[:, None]).exp().flatten()
    freq = counts / 20000
    se = torch.sqrt(p * (1 - p) / 20000)
    assert torch.all((freq - p).abs() < 4 * se + 1e-4)


def test_unknown_likelihood_lists_choices():
    with pytest.raises(
        ConfigError, match="unknown likelihood 'poisson'; choose one of: bernoulli, continuous-bernoulli"
    ):
        build_likelihood("poisson", SHAPE)


def test_fast_bernoulli_equals_torch_on_binary_and_general_data(gen):
    from torch.distributions import Bernoulli

    lik = build_likelihood("bernoulli", SHAPE)
    logits = torch.randn(5, 4, *SHAPE, generator=gen, dtype=torch.float64) * 6
    x = torch.bernoulli(torch.full((4, *SHAPE), 0.5, dtype=torch.float64), generator=gen)
    ours = lik(logits).log_prob(x)
    theirs = Bernoulli(logits=logits).log_prob(x.expand_as(logits)).flatten(2).sum(-1)
    torch.testing.assert_close(ours, theirs)
    grey = torch.rand(4, *SHAPE, generator=gen, dtype=torch.float64)
    general = (
        Bernoulli(logits=logits, validate_args=False).log_prob(grey.expand_as(logits)).flatten(2).sum(-1)
    )
    torch.testing.assert_close(lik(logits).log_prob(grey), general)


@pytest.mark.parametrize("lead", [(), (1,), (3,), (2, 3)])
def test_bernoulli_log_prob_and_gradients_equal_torch_for_any_leading_shape(lead, gen):
    """x * l - softplus(l) gives torch's Bernoulli log-mass and its gradients, whatever sits before the batch."""
    from torch.distributions import Bernoulli

    lik = build_likelihood("bernoulli", SHAPE)
    base = torch.randn(*lead, 4, *SHAPE, generator=gen, dtype=torch.float64) * 4
    x = torch.bernoulli(torch.full((4, *SHAPE), 0.3, dtype=torch.float64), generator=gen)
    ours_l, theirs_l = base.clone().requires_grad_(), base.clone().requires_grad_()
    ours = lik(ours_l).log_prob(x)
    theirs = Bernoulli(logits=theirs_l).log_prob(x.expand_as(theirs_l)).flatten(-3).sum(-1)
    assert ours.shape == (*lead, 4)
    torch.testing.assert_close(ours, theirs)
    weights = torch.randn(ours.shape, generator=gen, dtype=torch.float64)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    torch.testing.assert_close(ours_l.grad, theirs_l.grad)
