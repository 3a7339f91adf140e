"""The spread of the ELBO's gradient estimators (`vaelab.inference.gradients`): the comparison `vaelab vi`
prints must be a property of q, not of the random stream that measured it (issue 22, item 7: the score /
reparam ratio on the banana flow came out 1.1e+04 on one CPU and 0.0058 on another, and 2 to 5e9 from
five streams on one fixed q, because both estimators have heavy tails there)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from vaelab.commands import vi as vi_command
from vaelab.inference import gradients, toy, vi


def test_one_huge_estimate_leaves_the_typical_spread_alone():
    """199 gradients N(0, I) in 1,000 dimensions and one of norm 1e6: the median squared distance stays
    the trace of the covariance (1,000) while the variance is all the outlier's."""
    g = torch.randn(200, 1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g[17] = 1e6 / np.sqrt(1000)
    s = gradients.spread(g)
    assert s["median_squared_deviation"] == pytest.approx(1000, rel=0.05)
    assert s["total_variance"] > 4e9  # (1e6)² / 200: one estimate makes it
    assert s["p99_squared_deviation"] < 1200  # 1% of 200 is two estimates; only one is huge
    assert s["top_1pct_variance_share"] > 0.99  # it pulls the mean: the others lie 1e6 / 200 from it
    g[17] = 0
    light = gradients.spread(g)
    assert light["total_variance"] == pytest.approx(1000, rel=0.05)
    assert light["median_squared_deviation"] == pytest.approx(1000, rel=0.05)
    assert light["top_1pct_variance_share"] == pytest.approx(0.01, rel=0.15)  # 2 of 200, each about as far


def fake_estimator(scale: float, rare: float, rare_scale: float):
    """An estimator whose gradient is N(0, scale² I) over the flow's parameters, and with probability
    `rare` rare_scale times that: the shape of the score function's gradients on the banana flow, where
    about 1% of estimates are 10-1000 times as far out as the rest."""

    def estimate(model, family, num_samples, generator):
        params = torch.cat([p.flatten() for p in family.parameters()])
        noise = torch.randn(params.shape, generator=generator, dtype=params.dtype)
        if float(torch.rand((), generator=generator)) < rare:
            noise = noise * rare_scale
        objective = -(params * noise * scale).sum().expand(num_samples)
        return objective, objective.detach(), torch.zeros(num_samples, 2)

    return estimate


def test_printed_score_over_reparam_is_a_property_of_q_not_of_the_stream(monkeypatch):
    """Score-like estimates with a 1-in-200 tail 1,000 times out, reparam-like ones twice as spread in the
    bulk: the ratio `vaelab vi` prints is 1/4 whichever of six random streams measures it, where the ratio
    of the variances (what it printed before) lands on either side of 1 depending on whether a stream
    drew a tail estimate (as 1.1e+04 on one CPU and 0.0058 on another did on the banana flow)."""
    monkeypatch.setitem(gradients.ESTIMATORS, "reparam", fake_estimator(2.0, 0.0, 1.0))
    monkeypatch.setitem(gradients.ESTIMATORS, "score", fake_estimator(1.0, 0.005, 1000.0))
    model = toy.get_model("banana")
    q = vi.make_family("flow", model, torch.Generator().manual_seed(0))  # 10,730 parameters
    summary = {"elbo": -7.2, "elbo_standard_error": 0.01, "kl_q_p": 0.2, "kl_q_p_method": "quadrature"}
    summary |= {"elbo_plus_kl": -7.0, "log_evidence": -6.99, "identity_residual_in_tolerance": -0.5}
    summary |= {"kl_p_q": 1.2, "q_mass_on_grid": 1.0}
    printed, variance_ratio, shares = [], [], []
    for seed in range(6):
        summary["gradient_variance"] = vi.compare_estimators(
            model, q, 16, torch.Generator().manual_seed(seed)
        )
        line = vi_command._report(model, "flow", "reverse", summary)
        printed.append(float(re.search(r"score / reparam: (\S+) \(", line).group(1)))
        shares.append(
            re.search(r"make (\d+)% of the score function's variance, (\d+)% of reparam's\)$", line).groups()
        )
        gv = summary["gradient_variance"]
        variance_ratio.append(gv["score"]["total_variance"] / gv["reparam"]["total_variance"])
    assert printed == pytest.approx([0.25] * 6, rel=0.03), printed
    assert min(variance_ratio) < 0.3 and max(variance_ratio) > 30, variance_ratio  # why it is not printed
    # where a stream drew a tail estimate, the line says the score function's variance is all in it
    assert [share for share, ratio in zip(shares, variance_ratio) if ratio > 30] == [("99", "1")] * sum(
        ratio > 30 for ratio in variance_ratio
    )


def test_reparam_is_tighter_from_the_start_score_typically_tighter_at_the_optimum():
    """What docs/vi-and-mcmc.md says of the two estimators, on the banana with a full Gaussian q: from
    the prior-scale start the score function's typical spread is several times the reparameterised one;
    at the reverse-KL optimum (log p - log q nearly constant) it is below it."""
    model = toy.get_model("banana")
    start = vi.make_family("full", model, torch.Generator().manual_seed(0))
    end = vi.fit(model, "full", steps=600, generator=torch.Generator().manual_seed(1)).family
    at_start = [vi.compare_estimators(model, start, 16, torch.Generator().manual_seed(s)) for s in range(2)]
    at_end = [vi.compare_estimators(model, end, 16, torch.Generator().manual_seed(s)) for s in range(2)]
    assert min(c["score_over_reparam"] for c in at_start) > 2, at_start
    assert max(c["score_over_reparam"] for c in at_end) < 0.85, at_end
