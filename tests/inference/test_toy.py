"""Toy models: the truth they report is checked two independent ways (closed form vs cubature, cubature vs
the trapezoid rule on the grid), and log_joint is batched, dtype-preserving and differentiable."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli

from vaelab.errors import VaelabError
from vaelab.inference import toy

NAMES = list(toy.MODELS)


def test_registry_lists_choices_for_unknown_names():
    assert set(NAMES) == {"normal-normal", "bimodal-1d", "bimodal-2d", "banana", "logistic"}
    with pytest.raises(VaelabError, match="choose from: normal-normal, bimodal-1d"):
        toy.get_model("gaussian")


def test_cubature_matches_the_closed_form_of_the_conjugate_model():
    m = toy.get_model("normal-normal")
    closed, cubed = m.exact, toy.ToyModel.cubature(m)
    assert closed.method == "closed form"
    assert abs(cubed.log_evidence - closed.log_evidence) < 1e-8 + 10 * cubed.log_evidence_error
    np.testing.assert_allclose(cubed.mean, closed.mean, atol=1e-8)
    np.testing.assert_allclose(cubed.cov, closed.cov, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_grid_and_cubature_agree(name):
    """The trapezoid rule on the grid, normalised by the cubature's evidence, integrates to 1 and gives
    the same mean and covariance: two independent quadratures of the same posterior."""
    m = toy.get_model(name)
    g = m.grid
    w = (g.log_density + g.log_cell).exp()
    mass = float(w.sum())
    # The cubature's own error estimate, plus the (tiny) mass outside the box and the trapezoid error.
    assert abs(mass - 1) < 1e-6 + 10 * m.exact.log_evidence_error, mass
    mean = (w[:, None] * g.points).sum(0).numpy() / mass
    sd = np.sqrt(np.diag(m.exact.cov))
    np.testing.assert_allclose(mean, m.exact.mean, atol=1e-6 * sd.max())
    centred = g.points.numpy() - mean
    cov = (w.numpy()[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0) / mass
    np.testing.assert_allclose(cov, m.exact.cov, atol=1e-6 * sd.max() ** 2)
    # The box holds the posterior: the density on its faces is negligible against its peak.
    _, dens = m.posterior_density_grid()
    faces = max(np.abs(np.take(dens, [0, -1], axis=a)).max() for a in range(m.dim))
    assert faces < 1e-7 * dens.max()


def test_mirror_symmetries_are_exact():
    """y ~ N(z², 1) cannot tell z from -z; a two-component mixture cannot tell (μ₁, μ₂) from (μ₂, μ₁)."""
    assert abs(toy.get_model("bimodal-1d").exact.mean[0]) < 1e-9
    m2 = toy.get_model("bimodal-2d")
    assert abs(m2.exact.mean[0] - m2.exact.mean[1]) < 1e-8
    z = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(m2.log_likelihood(z), m2.log_likelihood(z.flip(-1)))


@pytest.mark.parametrize("name", NAMES)
def test_log_joint_is_batched_dtype_preserving_and_differentiable(name):
    m = toy.get_model(name)
    z = m.initial_points(12, torch.Generator().manual_seed(0)).reshape(3, 4, m.dim)
    lp = m.log_joint(z)
    assert lp.shape == (3, 4) and lp.dtype == torch.float64
    for i in range(3):
        torch.testing.assert_close(m.log_joint(z[i]), lp[i])
    z32 = z.float().requires_grad_(True)
    lp32 = m.log_joint(z32)
    assert lp32.dtype == torch.float32
    torch.testing.assert_close(lp32.double(), lp, rtol=1e-5, atol=1e-3)
    (grad32,) = torch.autograd.grad(lp32.sum(), z32)
    # the gradient is log_joint's: central differences in float64 (truncation ~h², rounding ~1e-16 |lp| / h)
    z64 = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m.log_joint(z64).sum(), z64)
    h = 1e-5
    step = torch.eye(m.dim, dtype=torch.float64) * h
    numeric = torch.stack([(m.log_joint(z + e) - m.log_joint(z - e)) / (2 * h) for e in step], -1)
    torch.testing.assert_close(grad, numeric, rtol=1e-8, atol=1e-6)
    torch.testing.assert_close(grad32.double(), grad, rtol=1e-5, atol=1e-4)


def test_logistic_likelihood_is_the_bernoulli_one():
    m = toy.get_model("logistic")
    z = torch.randn(6, 3, dtype=torch.float64)
    x, y = torch.as_tensor(m.design), torch.as_tensor(m.target)
    expected = Bernoulli(logits=z @ x.T).log_prob(y).sum(-1)
    torch.testing.assert_close(m.log_likelihood(z), expected)
    assert m.design.shape == (569, 3) and np.allclose(m.design[:, 1:].mean(0), 0, atol=1e-12)


def test_conjugate_evidence_is_the_marginal_likelihood():
    """log p(D) of the Normal-Normal model equals the Gaussian marginal of all data stacked together."""
    m = toy.get_model("normal-normal")
    n = len(m.data)
    cov = np.kron(np.eye(n), m.noise_cov) + np.kron(np.ones((n, n)), np.diag(m.prior_scale**2))
    x = m.data.reshape(-1)
    sign, logdet = np.linalg.slogdet(2 * math.pi * cov)
    expected = -0.5 * (logdet + x @ np.linalg.solve(cov, x))
    assert sign > 0 and abs(m.exact.log_evidence - expected) < 1e-9
