"""The HMC kernel: leapfrog accuracy and reversibility, rejection of non-finite proposals, batching,
dtypes, no_grad callers, and step-size adaptation."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from vaelab.inference import hmc

COV = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=torch.float64)


def gaussian(dtype: torch.dtype = torch.float64) -> MultivariateNormal:
    return MultivariateNormal(torch.zeros(2, dtype=dtype), covariance_matrix=COV.to(dtype))


def test_energy_error_shrinks_like_step_squared():
    """Over a fixed trajectory length, halving the step quarters the leapfrog energy error."""
    target = gaussian()
    g = torch.Generator().manual_seed(0)
    x = target.sample((4000,))
    p = torch.randn(x.shape, generator=g, dtype=x.dtype)
    state = hmc.init(x, target.log_prob)

    def mean_abs_error(eps: float) -> float:
        _, pe, lp, _ = hmc.leapfrog(x, p, state.grad, target.log_prob, eps, round(1.0 / eps))
        dh = (-lp + 0.5 * (pe**2).sum(-1)) - (-state.log_density + 0.5 * (p**2).sum(-1))
        return float(dh.abs().mean())

    errors = [mean_abs_error(eps) for eps in (0.05, 0.025, 0.0125)]
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    # Global error c ε² (1 + O((εω)²)) with ω = 1 / (smallest sd) ≈ 2.8: the ratio is 4 up to a few percent.
    for r in ratios:
        assert abs(r - 4) < 0.3, (errors, ratios)


def test_leapfrog_is_reversible():
    target = gaussian()
    x = target.sample((50,))
    p = torch.randn_like(x)
    state = hmc.init(x, target.log_prob)
    x1, p1, _, g1 = hmc.leapfrog(x, p, state.grad, target.log_prob, 0.1, 17)
    x2, p2, _, _ = hmc.leapfrog(x1, -p1, g1, target.log_prob, 0.1, 17)
    torch.testing.assert_close(x2, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(-p2, p, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_keeps_dtype_and_works_under_no_grad(dtype):
    target = gaussian(dtype)
    x = torch.zeros(8, 2, dtype=dtype)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    with torch.no_grad():
        s1, i1 = hmc.step(g1, hmc.init(x, target.log_prob), target.log_prob, 0.3, 5)
    s2, i2 = hmc.step(g2, hmc.init(x, target.log_prob), target.log_prob, 0.3, 5)
    for t in (*s1, *i1):
        assert not t.requires_grad
    assert s1.position.dtype == s1.log_density.dtype == s1.grad.dtype == i1.accept_prob.dtype == dtype
    assert s1.position.shape == (8, 2) and i1.accepted.dtype == torch.bool and i1.energy_error.shape == (8,)
    torch.testing.assert_close(s1.position, s2.position)  # same generator seed, same draw
    torch.testing.assert_close(i1.accept_prob, i2.accept_prob)


def test_non_finite_proposals_are_rejected_never_propagated():
    """A density that is nan beyond z₀ = 1 (a bug) or -inf below z₀ = -1 (outside the support)."""

    def log_density(z: torch.Tensor) -> torch.Tensor:
        lp = -0.5 * (z**2).sum(-1)
        lp = torch.where(z[..., 0] > 1, torch.full_like(lp, math.nan), lp)
        return torch.where(z[..., 0] < -1, torch.full_like(lp, -math.inf), lp)

    g = torch.Generator().manual_seed(0)
    state = hmc.init(torch.zeros(200, 2, dtype=torch.float64), log_density)
    rejected = 0
    for _ in range(20):
        state, info = hmc.step(g, state, log_density, 0.5, 4)
        assert torch.isfinite(state.position).all() and torch.isfinite(state.log_density).all()
        assert torch.isfinite(state.grad).all()
        assert (state.position[:, 0].abs() <= 1).all()
        bad = ~torch.isfinite(info.energy_error)
        assert (info.accept_prob[bad] == 0).all() and not info.accepted[bad].any()
        rejected += int(bad.sum())
    assert rejected > 100  # the test did exercise the rejection


def test_step_size_is_per_chain():
    """Chains in one batch follow their own step: a huge one is always rejected, zero is always accepted."""
    target = gaussian()
    x = target.sample((3,))
    state = hmc.init(x, target.log_prob)
    eps = torch.tensor([0.0, 0.2, 1e4], dtype=torch.float64)
    new, info = hmc.step(torch.Generator().manual_seed(0), state, target.log_prob, eps, 5)
    assert info.accept_prob[0] == 1.0 and torch.equal(new.position[0], x[0])
    assert info.accept_prob[2] == 0.0 and torch.equal(new.position[2], x[2])
    assert 0.0 < info.accept_prob[1] <= 1.0


@pytest.mark.parametrize("start", [3.0, 0.002])
def test_adaptation_reaches_target_acceptance(start):
    """From a step 10x too large or 100x too small, warm-up lands near the target acceptance of 0.65."""
    target = gaussian()
    g = torch.Generator().manual_seed(1)
    state = hmc.init(target.sample((20,)), target.log_prob)
    eps = torch.full((20,), start, dtype=torch.float64)
    for t in range(300):
        state, info = hmc.step(g, state, target.log_prob, eps, 5)
        eps = hmc.adapt_step_size(eps, info.accept_prob, 0.65, iteration=t)
    accept = []
    for _ in range(200):
        state, info = hmc.step(g, state, target.log_prob, eps, 5)
        accept.append(info.accept_prob)
    mean_accept = float(torch.stack(accept).mean())
    # 4000 chain-steps of a quantity in [0, 1] with sd <= 0.5: the average is known to +-0.02; the
    # Robbins-Monro step settles within a few percent of the root.
    assert abs(mean_accept - 0.65) < 0.08, mean_accept
    assert eps.std() / eps.mean() < 0.2  # all chains agree on the scale


def test_constant_log_density_has_zero_gradient():
    state = hmc.init(torch.ones(4, 3), lambda z: torch.zeros(z.shape[:-1]))
    assert torch.equal(state.grad, torch.zeros(4, 3))
