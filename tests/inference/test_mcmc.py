"""MCMC on posteriors whose truth is known: MH and HMC recover means and variances within 4 Monte Carlo
standard errors (from ArviZ's ESS), R-hat separates mixed from stuck chains, the error of the mean falls
like 1/sqrt(N), and bad settings are refused with one clear message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelab.errors import VaelabError
from vaelab.inference import diagnostics, mcmc, toy


def run(
    name: str, sampler: str, draws: int, warmup: int, seed: int = 0, chains: int = 4, **kw
) -> mcmc.Chains:
    m = toy.get_model(name)
    g = torch.Generator().manual_seed(seed)
    return mcmc.sample(m.log_joint, m.initial_points(chains, g), sampler, draws, warmup, generator=g, **kw)


def assert_recovers(name: str, chains: mcmc.Chains) -> dict:
    exact = toy.get_model(name).exact
    s = diagnostics.summarize(chains.samples, chains.accept_prob)
    z_mean = (np.array(s["mean"]) - exact.mean) / np.array(s["mean_mcse"])
    z_var = (np.array(s["var"]) - np.diag(exact.cov)) / np.array(s["var_mcse"])
    assert np.all(np.abs(z_mean) < 4), (z_mean, s)
    assert np.all(np.abs(z_var) < 4), (z_var, s)
    assert min(s["ess_bulk"]) > 100  # enough draws for the standard errors themselves to be sound
    return s


@pytest.mark.parametrize(
    ("name", "sampler", "draws"),
    [
        ("normal-normal", "mh", 2000),
        ("banana", "mh", 3000),
        pytest.param("logistic", "mh", 2000, marks=pytest.mark.slow),
        ("normal-normal", "hmc", 400),
    ],
)
def test_samplers_recover_the_exact_moments(name, sampler, draws):
    s = assert_recovers(name, run(name, sampler, draws, warmup=300, num_leapfrog=5))
    target = {"mh": 0.234, "hmc": 0.9}[sampler]
    assert abs(s["acceptance"] - target) < 0.1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["banana", "logistic"])
def test_hmc_recovers_non_gaussian_and_real_data_posteriors(name):
    assert_recovers(name, run(name, "hmc", 600, warmup=200, num_leapfrog=8))


def test_rhat_is_near_one_on_mixed_chains_and_the_error_falls_like_one_over_sqrt_n():
    ch = run("normal-normal", "hmc", 600, warmup=150, num_leapfrog=5, seed=1)
    rhat = diagnostics.rhat(ch.samples)
    assert np.all(rhat < 1.01), rhat
    m = toy.get_model("normal-normal")
    curve = diagnostics.error_curve(ch.samples, m.exact.mean, np.sqrt(np.diag(m.exact.cov)))
    assert -0.65 < curve["slope"] < -0.35, curve
    # And its level matches the prediction sqrt(τ / n) from the ESS, within the scatter of the windows.
    ratio = np.array(curve["rmse"]) / np.array(curve["predicted_rmse"])
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio


def test_the_mean_standard_error_is_arviz_mean_mcse():
    """sd / sqrt(ESS_mean), as ArviZ's mcse(method="mean"); not the rank-normalised bulk ESS, which on the
    banana's correlated MH chains is larger and would shrink the error bar."""
    import arviz

    ch = run("banana", "mh", 1500, warmup=300, seed=2)
    s = diagnostics.summarize(ch.samples)
    data = arviz.convert_to_dataset({"z": ch.samples.numpy()})
    expected = arviz.mcse(data, method="mean")["z"].values
    np.testing.assert_allclose(s["mean_mcse"], expected, rtol=1e-6)
    assert max(s["ess_bulk"][i] / s["ess_mean"][i] for i in range(2)) > 1.05


def test_rhat_flags_chains_stuck_in_different_modes():
    """Two chains in each label-switched mode, with a step far too small to cross: R-hat >> 1.1."""
    m = toy.get_model("bimodal-2d")
    modes = torch.tensor([[-1.5, 1.5], [1.5, -1.5]], dtype=torch.float64)
    start = modes.repeat(2, 1)
    g = torch.Generator().manual_seed(0)
    ch = mcmc.sample(m.log_joint, start, "mh", draws=500, warmup=0, step_size=0.02, adapt=False, generator=g)
    assert np.all(diagnostics.rhat(ch.samples) > 1.1)
    # Each chain stayed in its own mode.
    assert (ch.samples[0::2, :, 0] < 0).all() and (ch.samples[1::2, :, 0] > 0).all()


def test_mh_kernel_is_batched_and_rejects_non_finite_proposals():
    """Each of the 5 x 7 chains steps as the kernel documents, from the same generator's draws: x' = x + 0.5 ε,
    accepted when u < min(1, p(x') / p(x)), and a proposal whose density is nan has acceptance 0."""

    def log_density(z):
        lp = -0.5 * (z**2).sum(-1)
        return torch.where(z[..., 0] > 0.5, torch.full_like(lp, float("nan")), lp)

    g, twin = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    state = mcmc.init(torch.zeros(5, 7, 2, dtype=torch.float64), log_density)
    moved = refused = 0
    for _ in range(50):
        x, lp = state.position, state.log_density
        proposal = x + 0.5 * torch.randn(x.shape, generator=twin, dtype=torch.float64)
        u = torch.rand(lp.shape, generator=twin, dtype=torch.float64)
        lp_new = log_density(proposal)
        finite = torch.isfinite(lp_new)
        want_prob = torch.where(finite, (lp_new - lp).exp().clamp(max=1.0), torch.zeros_like(lp))
        state, info = mcmc.step(g, state, log_density, 0.5)
        assert info.accept_prob.shape == (5, 7) and info.accepted.dtype == torch.bool
        torch.testing.assert_close(info.accept_prob, want_prob, rtol=1e-12, atol=0)
        assert torch.equal(info.accepted, u < want_prob)
        assert torch.equal(state.position, torch.where(info.accepted[..., None], proposal, x))
        assert torch.equal(state.log_density, torch.where(info.accepted, lp_new, lp))
        moved += int(info.accepted.sum())
        refused += int((~finite).sum())
    assert moved > 100 and refused > 100  # both branches ran
    assert torch.isfinite(state.log_density).all() and (state.position[..., 0] <= 0.5).all()


def test_bad_settings_are_refused_with_clear_messages():
    m = toy.get_model("banana")
    x0 = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(VaelabError, match="unknown sampler 'nuts'; choose from: mh, hmc"):
        mcmc.sample(m.log_joint, x0, "nuts")
    with pytest.raises(VaelabError, match="draws must be at least 1"):
        mcmc.sample(m.log_joint, x0, "mh", draws=0)
    with pytest.raises(VaelabError, match="step size must be a positive number"):
        mcmc.sample(m.log_joint, x0, "mh", step_size=-1.0)
    far = torch.tensor([[0.0, 0.0], [1e200, 0.0]], dtype=torch.float64)
    with pytest.raises(VaelabError, match=r"log density is -inf at z=\[1e\+200, 0\] \(chain 1, step 0\)"):
        mcmc.sample(m.log_joint, far, "hmc")


def test_same_seed_same_chains():
    a = run("banana", "hmc", 20, warmup=10)
    b = run("banana", "hmc", 20, warmup=10)
    assert torch.equal(a.samples, b.samples) and torch.equal(a.step_size, b.step_size)
