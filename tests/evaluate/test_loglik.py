"""Importance sampling against probabilistic PCA's exact log p(x)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError, VaelabError
from vaelab.evaluate.loglik import _GroupMeans, importance_sampling
from vaelab.models import Autoencoder

from ppca_models import make_ppca, set_exact_encoder, simulate


def test_is_approaches_the_exact_value_as_a_stochastic_lower_bound(ppca):
    """The error shrinks with K; log of the unbiased p(x) estimate is biased down (Jensen), so the paired
    per-datum difference to the exact log p(x) is never significantly above 0; the summary's stderr is
    the sd over images / sqrt(N)."""
    m, x = ppca
    exact = m.exact_log_px(x).detach()
    errors = {}
    for k in (1, 50, 5000):
        r = importance_sampling(m, x, k, torch.Generator().manual_seed(k), chunk=500)
        diff = (r.log_px - exact).double()
        errors[k] = float(diff.abs().mean())
        assert float(diff.mean()) <= 4 * float(diff.std()) / len(diff) ** 0.5, k
    assert errors[5000] < errors[50] < errors[1]
    assert errors[5000] < 0.05
    summary = r.summary()
    assert summary["stderr"] == pytest.approx(float(r.log_px.double().std()) / len(x) ** 0.5, rel=1e-12)


def test_exact_posterior_proposal_gives_exact_value_and_full_ess():
    m = make_ppca(latent=1)
    set_exact_encoder(m)
    x = simulate(m, 10)
    r = importance_sampling(m, x, 64, torch.Generator().manual_seed(0))
    torch.testing.assert_close(r.log_px, m.exact_log_px(x).detach(), rtol=0, atol=1e-9)
    torch.testing.assert_close(r.ess, torch.full((10,), 64.0, dtype=torch.float64), rtol=1e-9, atol=0)


def test_iwae_curve_is_ordered_and_below_log_px(ppca):
    m, x = ppca
    r = importance_sampling(m, x, 5000, torch.Generator().manual_seed(3), chunk=1000)
    s = r.summary()
    curve = [s["iwae_curve"][str(k)]["log_px"] for k in (1, 5, 50, 500, 5000)]
    assert all(b > a for a, b in itertools.pairwise(curve))
    assert curve[-1] == pytest.approx(s["log_px"])
    assert curve[-1] <= float(m.exact_log_px(x).mean()) + 0.05
    assert curve[0] == pytest.approx(float(r.elbo.mean()), abs=1e-9)


@pytest.mark.parametrize("chunks", [[7, 7, 7, 3], [24], [1] * 24, [5, 19]])
def test_group_means_stream_exactly(chunks):
    lw = torch.randn(24, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for k in (1, 2, 3, 4, 6, 8, 12, 24):
        g = _GroupMeans(k, 3, torch.device("cpu"))
        start = 0
        for c in chunks:
            g.add(lw[start : start + c])
            start += c
        direct = (lw.view(24 // k, k, 3).logsumexp(1) - math.log(k)).mean(0)
        torch.testing.assert_close(g.value(), direct)


def test_memory_stays_bounded_whatever_k(ppca):
    m, x = ppca
    calls = []
    original = m.log_importance_weights

    def spy(xx, k, generator=None):
        calls.append((len(xx), k))
        return original(xx, k, generator)

    m.log_importance_weights = spy
    importance_sampling(m, x, 3000, torch.Generator().manual_seed(0), chunk=400, max_elements=4000)
    assert max(b * k for b, k in calls) <= 4000
    assert sum(b * k for b, k in calls) == len(x) * 3000


def test_bad_settings_and_models(ppca):
    m, x = ppca
    with pytest.raises(ConfigError, match="K must be >= 1"):
        importance_sampling(m, x, 0)
    ae = Autoencoder(ModelConfig(hidden=(8,), latent_dim=2), (1, 2, 3))
    with pytest.raises(VaelabError, match="importance sampling does not apply to Autoencoder"):
        importance_sampling(ae, x.float(), 10)


def test_evaluate_refuses_a_bare_tensor_for_data(ppca):
    """A tensor has no image shape apart from its batch: bits/dim came out 40x too small before this check."""
    from vaelab.evaluate import evaluate

    m, x = ppca
    with pytest.raises(ConfigError, match="must be a Prepared split .* not Tensor"):
        evaluate(m, x, importance=2)
