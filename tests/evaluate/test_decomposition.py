"""The ELBO's decomposition: two forms agree, the gap is KL to the exact posterior, units and MI behave."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from vaelab.config import ModelConfig
from vaelab.evaluate.decomposition import decompose, mutual_information
from vaelab.models import build_model

from ppca_models import make_ppca, set_encoder, set_exact_encoder, simulate


def test_gap_equals_kl_to_the_exact_posterior():
    m = make_ppca()
    set_encoder(m, shift=0.7, inflate=1.8)
    x = simulate(m, 50)
    with torch.no_grad():
        q = m.encode(x)
        kl_exact = kl_divergence(
            MultivariateNormal(q.mean, torch.diag_embed(q.variance)), m.exact_posterior(x)
        )
        exact = m.exact_log_px(x)
    d = decompose(m, x, num_samples=400, generator=torch.Generator().manual_seed(0), log_px=exact)
    # gap - mean exact KL is the Monte Carlo error of the mean E_q log p(x|z) (the KL term is analytic):
    # its sd is sqrt(sum_i Var_q[log p(x_i|z)] / 400) / 50, the per-datum variances from independent draws
    with torch.no_grad():
        torch.manual_seed(9)
        z = q.sample((4000,))
        var_i = m.decode(z).log_prob(x).var(0)
    mc_se = float(var_i.sum() / 400) ** 0.5 / 50
    assert abs(d["gap"] - float(kl_exact.mean())) < 4 * mc_se
    assert abs(d["forms_difference"]) < 4 * d["forms_difference_stderr"] + 1e-9
    assert abs(sum(d["kl_per_dim"]) - d["kl"]) < 1e-9
    assert d["elbo"] == pytest.approx(d["rec"] - d["kl"], abs=1e-9)


def test_exact_posterior_closes_the_gap():
    m = make_ppca(latent=1)
    set_exact_encoder(m)
    x = simulate(m, 20)
    d = decompose(
        m, x, num_samples=2000, generator=torch.Generator().manual_seed(1), log_px=m.exact_log_px(x).detach()
    )
    assert abs(d["gap"]) < 0.01


def test_active_units_and_mutual_information():
    m = build_model(ModelConfig(hidden=(16,), latent_dim=3), (1, 4, 4))
    with torch.no_grad():
        m.head.weight[1].zero_()  # z_1's mean no longer depends on x: an inactive unit
        m.head.bias[1] = 0.3
    x = torch.rand(300, 1, 4, 4, generator=torch.Generator().manual_seed(0)).round()
    d = decompose(m, x, num_samples=2, generator=torch.Generator().manual_seed(2))
    assert d["posterior_mean_variance_per_dim"][1] < 1e-12
    assert d["active_units"] == sum(v > 0.01 for v in d["posterior_mean_variance_per_dim"]) <= 2
    assert 0 <= d["mutual_information"] <= math.log(300) + 0.1


def test_mutual_information_extremes():
    g = torch.Generator().manual_seed(3)
    n = 1000
    same = mutual_information(torch.zeros(n, 2), torch.ones(n, 2), g)
    assert abs(same) < 1e-6  # q(z|x) ignores x: no information
    apart = mutual_information(torch.arange(n, dtype=torch.float32)[:, None] * 100, torch.ones(n, 1), g)
    assert abs(apart - math.log(n)) < 1e-3  # perfectly separable codes: I = log N, the estimator's ceiling
