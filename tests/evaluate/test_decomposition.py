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


def mi_by_hand(loc: torch.Tensor, scale: torch.Tensor, eps: torch.Tensor) -> float:
    """mean_n log q(z_n|x_n) - log (1/N) sum_m q(z_n|x_m) with z_n = loc_n + scale_n eps_n, written out
    densely (Gaussian log densities by formula, one [N, N] logsumexp) to check the chunked estimator."""
    z = loc + scale * eps

    def log_q(z, m, s):
        return (-0.5 * ((z - m) / s) ** 2 - s.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    own = log_q(z, loc, scale)
    agg = torch.logsumexp(log_q(z[:, None], loc[None], scale[None]), 1) - math.log(len(loc))
    return float((own - agg).mean())


def test_active_units_and_mutual_information():
    """A unit with a constant mean is inactive; I(x; z) equals the hand computation from the same draws
    (float64 model, so to 1e-10): the generator gives decompose's [2, N, D] draws first, then the MI's."""
    with torch.random.fork_rng():
        torch.manual_seed(0)  # a fixed initialisation, without moving the global stream
        m = build_model(ModelConfig(hidden=(16,), latent_dim=3), (1, 4, 4)).double()
    with torch.no_grad():
        m.head.weight[1].zero_()  # z_1's mean no longer depends on x: an inactive unit
        m.head.bias[1] = 0.3
    x = torch.rand(300, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64).round()
    d = decompose(m, x, num_samples=2, generator=torch.Generator().manual_seed(2))
    assert d["posterior_mean_variance_per_dim"][1] < 1e-12
    assert d["active_units"] == sum(v > 0.01 for v in d["posterior_mean_variance_per_dim"]) <= 2
    with torch.no_grad():
        q = m.encode(x).base_dist
    assert q.scale.std(0).min() > 1e-3  # the posteriors' scales differ between images
    g = torch.Generator().manual_seed(2)
    torch.randn((2, 300, 3), generator=g, dtype=torch.float64)  # the one batch's draws of z for the ELBO
    eps = torch.randn((300, 3), generator=g, dtype=torch.float64)
    assert d["mutual_information"] == pytest.approx(mi_by_hand(q.loc, q.scale, eps), rel=0, abs=1e-10)
    assert 0 < d["mutual_information"] < math.log(300)


def test_mutual_information_extremes():
    """Closed forms with non-unit scales: identical posteriors carry no information (I = 0), separated ones
    the estimator's ceiling log N; overlapping ones with per-image scales equal the hand computation."""
    g = torch.Generator().manual_seed(3)
    n = 1000
    f64 = torch.float64
    same = mutual_information(
        torch.zeros(n, 2, dtype=f64), torch.tensor([[0.3, 2.5]], dtype=f64).expand(n, 2), g
    )
    assert abs(same) < 1e-12  # q(z|x) ignores x: log q(z|x_n) = log q(z), no information
    apart_scale = torch.linspace(0.5, 2.0, n, dtype=f64)[:, None]  # nearest neighbour >= 40 scales away
    apart = mutual_information(torch.arange(n, dtype=f64)[:, None] * 100, apart_scale, g)
    assert abs(apart - math.log(n)) < 1e-10  # perfectly separable codes: I = log N, the estimator's ceiling
    gen = torch.Generator().manual_seed(4)
    loc = torch.randn(600, 3, generator=gen, dtype=f64)
    scale = 0.2 + torch.rand(600, 3, generator=gen, dtype=f64)  # in [0.2, 1.2): overlapping posteriors
    eps = torch.randn(loc.shape, generator=torch.Generator().manual_seed(5), dtype=f64)
    want = mi_by_hand(loc, scale, eps)
    assert 0.1 < want < math.log(600) - 0.1  # neither extreme
    for chunk in (256, 7):  # chunks that do not divide N
        got = mutual_information(loc, scale, torch.Generator().manual_seed(5), chunk=chunk)
        assert got == pytest.approx(want, rel=0, abs=1e-10)
