"""Variational inference against known truth: ELBO + KL = log p(D) at several q (KL by closed form or
quadrature, never from the ELBO's own draws), the conjugate optimum, moment matching by the forward KL,
the variance of the two gradient estimators, the spline flow's algebra, and clear errors."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence

from vaelab.errors import VaelabError
from vaelab.inference import families, toy, vi


@functools.cache
def partly_fitted(name: str, family: str, steps: int, seed: int) -> vi.Family:
    """A q on its way to the optimum, not at it (a few hundred steps from a random start). Fitted on one
    thread: the same q on every machine (reductions over threads round differently)."""
    m = toy.get_model(name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return vi.fit(
            m, family, steps=steps, generator=torch.Generator().manual_seed(seed), kl_every=steps
        ).family
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("name", "family", "steps"),
    [
        ("banana", "full", 60),
        ("banana", "mixture", 150),
        ("bimodal-1d", "diagonal", 40),
        ("bimodal-1d", "flow", 60),
        ("bimodal-2d", "mixture", 100),
        ("logistic", "full", 150),
        ("normal-normal", "mixture", 100),
    ],
)
def test_elbo_plus_kl_is_the_log_evidence(name, family, steps):
    """At q's that are not optima, the Monte Carlo ELBO plus the quadrature KL(q || p) is log p(D)
    within 4 of the combined errors: the ELBO's standard error and the quadrature's error estimates."""
    m = toy.get_model(name)
    q = partly_fitted(name, family, steps, seed=1)
    s = vi.evaluate(m, q, torch.Generator().manual_seed(2), 20000)
    assert s["kl_q_p_method"] == "quadrature"
    assert s["q_mass_on_grid"] > 1 - 1e-4, s  # the covering grid holds q
    assert abs(s["identity_residual"]) < 4 * s["identity_tolerance"], s
    # The check is sharp: leaving out the KL term would fail it.
    assert s["kl_q_p"] > 4 * s["identity_tolerance"], s


def test_closed_form_and_quadrature_kl_agree():
    m = toy.get_model("normal-normal")
    family = partly_fitted("normal-normal", "full", 100, seed=0)
    q = family.distribution()
    g = vi.covering_grid(m, family.sample(5000, torch.Generator().manual_seed(0)))
    with torch.no_grad():
        log_q = q.log_prob(g.points)
        quad = float(((log_q + g.log_cell).exp() * (log_q - g.log_density)).sum())
        closed = float(kl_divergence(q, m.posterior()))
    assert closed > 0.01 and abs(quad - closed) < 1e-8
    assert vi.reverse_kl(m, q).method == "closed form"


@pytest.mark.slow
def test_conjugate_optimum_is_the_analytic_one():
    """Full covariance: q* = p(z | D). Mean field: q* has the exact mean and precisions equal to the
    diagonal of the posterior precision (Bishop 2006, 10.1.2), so variances too small by 1 - ρ²."""
    m = toy.get_model("normal-normal")
    post = m.posterior()
    mean, cov = post.mean, post.covariance_matrix
    sd = cov.diagonal().sqrt()
    # Stochastic optimisation leaves the iterate within ~0.02 posterior sd of the optimum (measured over
    # seeds with these settings); the tolerances are 3-4 times that.
    full = vi.fit(m, "full", steps=1000, lr=0.05, num_samples=32, generator=torch.Generator().manual_seed(0))
    q = full.family.distribution()
    with torch.no_grad():
        assert torch.all(((q.mean - mean) / sd).abs() < 0.06)
        assert torch.all((q.stddev / sd - 1).abs() < 0.04)
        assert float(kl_divergence(q, post)) < 0.003
    diag = vi.fit(
        m, "diagonal", steps=1000, lr=0.05, num_samples=32, generator=torch.Generator().manual_seed(0)
    )
    q = diag.family.distribution()
    mean_field_sd = torch.linalg.inv(cov).diagonal().rsqrt()
    with torch.no_grad():
        assert torch.all(((q.mean - mean) / sd).abs() < 0.06)
        assert torch.all((q.stddev / mean_field_sd - 1).abs() < 0.04)
        assert torch.all(
            q.stddev < 0.7 * sd
        )  # visibly under-dispersed: variances 1 - ρ² = 0.37 of the exact ones here
    # And the ELBO of each sits below log p(D) by exactly its KL (closed form).
    for r in (full, diag):
        assert abs(r.summary["identity_residual"]) < 4 * r.summary["identity_tolerance"]


def test_forward_kl_with_a_gaussian_matches_the_moments():
    """argmin_q KL(p || q) over Gaussians is the Gaussian with p's mean and covariance (mass covering)."""
    m = toy.get_model("banana")
    r = vi.fit(m, "full", "forward", steps=800, lr=0.05, generator=torch.Generator().manual_seed(0))
    q = r.family.distribution()
    sd = np.sqrt(np.diag(m.exact.cov))
    with torch.no_grad():
        np.testing.assert_allclose(q.mean.numpy(), m.exact.mean, atol=1e-4 * sd.max())
        np.testing.assert_allclose(q.covariance_matrix.numpy(), m.exact.cov, atol=1e-4 * sd.max() ** 2)
    assert r.summary["kl_p_q"] < r.summary["kl_q_p"]  # it pays for covering with a large reverse KL


@pytest.mark.slow
def test_reverse_kl_seeks_a_mode_forward_kl_covers_both():
    m = toy.get_model("bimodal-1d")
    rev = vi.fit(
        m, "full", "reverse", steps=1000, generator=torch.Generator().manual_seed(0)
    ).family.distribution()
    fwd = vi.fit(m, "full", "forward", steps=400, lr=0.05, generator=torch.Generator().manual_seed(0))
    exact_sd = math.sqrt(m.exact.cov[0, 0])
    with torch.no_grad():
        assert abs(float(rev.mean)) > 0.8 and float(rev.stddev) < 0.4 * exact_sd  # one mode, narrow
        q = fwd.family.distribution()
        assert abs(float(q.mean)) < 1e-4 and abs(float(q.stddev) / exact_sd - 1) < 1e-4  # both, wide


def test_reparameterised_gradient_has_lower_variance_than_score_function():
    """Same problem, same q, same number of draws: at the start and midway through fitting."""
    m = toy.get_model("banana")
    g = torch.Generator().manual_seed(0)
    q = vi.make_family("full", m, g)
    mid = vi.fit(m, "full", steps=150, generator=torch.Generator().manual_seed(1)).family
    for family in (q, mid):
        rep = vi.gradient_variance(m, family, "reparam", 16, 100, g)
        score = vi.gradient_variance(m, family, "score", 16, 100, g)
        # Each variance is estimated from 100 draws to within ~30%; the gap is several-fold.
        assert score["total_variance"] > 2 * rep["total_variance"], (rep, score)


def test_score_function_fit_also_climbs():
    m = toy.get_model("normal-normal")
    r = vi.fit(m, "full", steps=400, lr=0.05, estimator="score", generator=torch.Generator().manual_seed(0))
    kl = r.trace["kl"][~np.isnan(r.trace["kl"])]
    assert kl[-1] < 0.05 * kl[0]


def test_spline_is_invertible_with_the_right_log_determinant():
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(-7, 7, 301, dtype=torch.float64)
    params = torch.randn(301, 3 * 6 - 1, generator=g, dtype=torch.float64)
    y, log_det = families.rq_spline(x, params)
    back, log_det_inv = families.rq_spline(y, params, inverse=True)
    torch.testing.assert_close(back, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(log_det_inv, -log_det, atol=1e-10, rtol=0)
    xg = x.clone().requires_grad_(True)
    (dy,) = torch.autograd.grad(families.rq_spline(xg, params)[0].sum(), xg)
    torch.testing.assert_close(dy.log(), log_det, atol=1e-10, rtol=0)
    assert torch.all(dy > 0)  # monotone
    torch.testing.assert_close(
        families.rq_spline(x, torch.zeros(17, dtype=torch.float64))[0], x
    )  # zeros: identity


@pytest.mark.slow
def test_coupling_flow_density_is_the_change_of_variables():
    m = toy.get_model("banana")
    family = partly_fitted("banana", "flow", 400, seed=1)
    q = family.distribution()
    eps = torch.randn(2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def push(e: torch.Tensor) -> torch.Tensor:
        for t in family.distribution().transforms:
            e = t(e)
        return e

    jac = torch.autograd.functional.jacobian(push, eps)
    base = torch.distributions.Normal(0.0, 1.0).log_prob(eps).sum()
    with torch.no_grad():
        expected = base - torch.linalg.slogdet(jac).logabsdet
        torch.testing.assert_close(q.log_prob(push(eps)), expected, atol=1e-8, rtol=1e-8)
        z = family.sample(5000, torch.Generator().manual_seed(1))
        kl = vi.reverse_kl(m, q, vi.covering_grid(m, z))
    # A trained spline flow has kinks at its knots, so the trapezoid rule is only O(h²) accurate on it:
    # the mass is 1 to within a few times the grid's own error estimate.
    assert abs(kl.q_mass - 1) < 0.05 and kl.error < 0.1


def test_elementwise_flow_integrates_to_one():
    m = toy.get_model("bimodal-1d")
    family = partly_fitted("bimodal-1d", "flow", 60, seed=1)
    with torch.no_grad():
        z = family.sample(5000, torch.Generator().manual_seed(1))
        kl = vi.reverse_kl(m, family.distribution(), vi.covering_grid(m, z))
    assert abs(kl.q_mass - 1) < 1e-5


def test_non_finite_log_joint_names_the_point_and_the_step():
    banana = toy.get_model("banana")

    class Broken(toy.Banana):
        def log_likelihood(self, z):
            ll = super().log_likelihood(z)
            return torch.where(z[..., 0] > 0.5, torch.full_like(ll, math.nan), ll)

    broken = Broken()
    broken.__dict__.update(exact=banana.exact, grid=banana.grid)
    with pytest.raises(VaelabError, match=r"log p\(D, z\) is nan at z=\[0\.\d+, -?\d.*\] \(step 1\)"):
        vi.fit(broken, "diagonal", steps=10, generator=torch.Generator().manual_seed(0))


def test_bad_settings_are_refused():
    m = toy.get_model("banana")
    with pytest.raises(VaelabError, match="unknown family 'gmm'; choose from: diagonal, full, mixture, flow"):
        vi.fit(m, "gmm")
    with pytest.raises(VaelabError, match="unknown divergence 'alpha'; choose from: reverse, forward"):
        vi.fit(m, "full", "alpha")
    with pytest.raises(VaelabError, match="unknown estimator"):
        vi.fit(m, "full", estimator="vimco")
    with pytest.raises(VaelabError, match="steps must be at least 1, got 0"):
        vi.fit(m, "full", steps=0)


@pytest.mark.parametrize(
    ("family", "lr", "what"),
    [
        ("full", 1e30, r"q is no longer a valid distribution \(ValueError\) at step 1"),
        ("full", 5.0, r"q's density underflowed to 0 all over the posterior's grid at step 11"),
    ],
)
def test_a_diverging_q_names_the_step_the_family_and_the_remedy(family, lr, what):
    """Checked after every optimiser step: finite parameters, a valid q, finite measurements, q's density on
    the grid; the fit stops at the first failure instead of handing a broken q to the figures."""
    m = toy.get_model("banana")
    with pytest.raises(VaelabError, match=what + rf": the {family} q diverged; try a smaller --lr$"):
        vi.fit(m, family, steps=100, lr=lr, generator=torch.Generator().manual_seed(0))
