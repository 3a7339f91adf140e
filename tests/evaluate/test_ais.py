"""Annealed importance sampling and BDMC against probabilistic PCA's exact log p(x)."""

from __future__ import annotations

import pytest
import torch

import vaelab.inference.ais as ais_module
from vaelab.distributions.sampling import sample
from vaelab.errors import ConfigError
from vaelab.inference.ais import ais_log_px, anneal, bdmc, log_mean_exp, schedule

from ppca_models import make_ppca, set_encoder, simulate


@pytest.mark.parametrize("kind", ["sigmoid", "geometric", "linear"])
def test_schedules_run_from_zero_to_one(kind):
    b = schedule(50, kind)
    assert len(b) == 51 and b[0] == 0 and b[-1] == 1
    assert torch.all(b[1:] > b[:-1])


def test_schedule_errors():
    with pytest.raises(ConfigError, match="at least 2 intermediate distributions, got T = 1"):
        schedule(1)
    with pytest.raises(ConfigError, match="unknown AIS schedule 'cubic'"):
        schedule(10, "cubic")


@pytest.mark.slow
def test_ais_lands_within_a_tenth_of_a_nat():
    m = make_ppca()
    x = simulate(m, 24)
    est, run = ais_log_px(m, x, 400, 8, torch.Generator().manual_seed(0), leapfrog=5)
    err = (est - m.exact_log_px(x)).detach()
    assert abs(float(err.mean())) < 0.1
    assert 0.5 < float(run.acceptance.mean()) < 0.9


def test_a_single_step_is_plain_importance_sampling_from_the_prior():
    """With T steps the estimate is unbiased in p(x) whatever T: checked at T = 2 against the prior-proposal identity."""
    m = make_ppca(latent=1, shape=(1, 1, 2), sigma=1.0, w_scale=0.5)
    x = simulate(m, 3)
    g = torch.Generator().manual_seed(2)
    z0 = sample(m.prior(), (20002, 3), g)
    run = anneal(m, x, schedule(2, "linear"), z0, g, leapfrog=3, pilots=2)
    ratio = (log_mean_exp(run.log_w) - m.exact_log_px(x).detach()).exp()
    se = (run.log_w - m.exact_log_px(x).detach()).exp().std(0) / 20000**0.5
    assert torch.all((ratio - 1).abs() < 4 * se)


@pytest.mark.slow
def test_bdmc_brackets_the_exact_value():
    m = make_ppca()
    set_encoder(m, 0.5, 1.5)
    out = bdmc(m, 24, 300, 4, torch.Generator().manual_seed(1), leapfrog=5)
    exact = m.exact_log_px(out["x"]).detach()
    lower, upper = out["lower"] - exact, out["upper"] - exact
    n = len(exact)
    assert float(lower.mean()) <= 4 * float(lower.std()) / n**0.5
    assert float(upper.mean()) >= -4 * float(upper.std()) / n**0.5
    short = bdmc(m, 24, 30, 4, torch.Generator().manual_seed(1), leapfrog=5)
    assert float((out["upper"] - out["lower"]).mean()) < 0.5 * float((short["upper"] - short["lower"]).mean())


def test_reverse_ais_from_the_exact_posterior_is_an_upper_bound():
    """E[log w_rev] <= -log p(x): the per-datum mean over many reverse chains stays at or above the exact value."""
    m = make_ppca()
    x = simulate(m, 4)
    post = m.exact_posterior(x)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        z0 = post.sample((66,))
    run = anneal(m, x, schedule(100, "sigmoid").flip(0), z0, g, leapfrog=5, pilots=2)
    upper = -run.log_w  # [64, 4] per-chain upper-bound estimates
    exact = m.exact_log_px(x).detach()
    se = upper.std(0) / 64**0.5
    assert torch.all(upper.mean(0) - exact > -4 * se)


def test_reverse_run_reuses_the_forward_step_sizes_reversed_and_has_no_pilots(monkeypatch):
    """The reverse kernels must not depend on the counted chains' start z*: they are the forward run's (which
    started from prior draws), transition t of T at the step the forward run used for beta_{T-t}."""
    m = make_ppca()
    calls = []
    original = anneal

    def spy(*args, **kw):
        run = original(*args, **kw)
        calls.append((args[3].shape[0], kw.get("pilots"), kw.get("step_sizes"), run))
        return run

    monkeypatch.setattr(ais_module, "anneal", spy)
    bdmc(m, 5, 12, 3, torch.Generator().manual_seed(2), leapfrog=3)
    (n_fwd, pilots_fwd, given_fwd, fwd), (n_rev, pilots_rev, given_rev, rev) = calls
    assert (n_fwd, pilots_fwd, given_fwd) == (3 + 2, 2, None) and (n_rev, pilots_rev) == (3, 0)
    assert fwd.step_sizes.shape == (12, 5) and not torch.equal(fwd.step_sizes[0], fwd.step_sizes[-1])
    order = [10 - i for i in range(11)] + [0]  # forward transitions 11, 10, ..., 1, then 1 again for beta_0
    assert torch.equal(given_rev, fwd.step_sizes[order]) and torch.equal(rev.step_sizes, given_rev)


def test_pilot_settings_are_checked():
    m = make_ppca()
    x = simulate(m, 2)
    with pytest.raises(ConfigError, match="need at least one pilot and one counted chain"):
        anneal(m, x, schedule(3), torch.zeros(2, 2, 2, dtype=torch.float64), None, pilots=2)
    with pytest.raises(ConfigError, match="given step sizes need pilots=0"):
        anneal(
            m, x, schedule(3), torch.zeros(3, 2, 2, dtype=torch.float64), None, step_sizes=torch.ones(3, 2)
        )
    with pytest.raises(ConfigError, match="at least 1 chain per datum, got C = 0"):
        ais_log_px(m, x, 10, 0)
