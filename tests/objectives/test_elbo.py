"""The ELBO on probabilistic PCA, where log p(x) and p(z|x) are exact: bounds, gap and KL estimators."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.models.linear import LinearGaussianVAE
from vaelab.objectives.elbo import elbo_objective, elbo_terms, iwae_bound, kl_weight


@pytest.fixture
def ppca():
    torch.manual_seed(0)
    m = LinearGaussianVAE(
        ModelConfig(name="linear-gaussian", latent_dim=3, gaussian_sigma=0.5), (1, 2, 3)
    ).double()
    with torch.no_grad():
        m.decoder.weight.normal_(0, 0.8)
        m.encoder.weight.normal_(0, 0.2)  # a deliberately imperfect encoder
    x = torch.randn(8, 1, 2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return m, x


def _as_mvn(q):
    return MultivariateNormal(q.mean, covariance_matrix=torch.diag_embed(q.variance))


def test_gap_equals_kl_to_the_exact_posterior(ppca):
    """log p(x) - ELBO = KL(q(z|x) || p(z|x)); the ELBO is estimated with many samples."""
    m, x = ppca
    n = 20000
    with torch.no_grad():
        log_w = m.log_importance_weights(x, n, torch.Generator().manual_seed(2))
        elbo, se = log_w.mean(0), log_w.std(0) / n**0.5
        gap = kl_divergence(_as_mvn(m.encode(x)), m.exact_posterior(x))
        log_px = m.exact_log_px(x)
    assert torch.all(gap > 0)
    assert torch.all((log_px - elbo - gap).abs() < 4 * se)


def test_exact_posterior_makes_the_bound_tight(ppca):
    m, x = ppca
    post = m.exact_posterior(x)
    with torch.no_grad():
        z = post.sample((5,))
        log_w = m.decode(z).log_prob(x) + m.prior().log_prob(z) - post.log_prob(z)
    torch.testing.assert_close(log_w, m.exact_log_px(x).expand(5, -1))


def test_elbo_below_iwae_below_log_px_and_iwae_grows_with_k(ppca):
    m, x = ppca
    reps = 400
    with torch.no_grad():
        bounds = {}
        for k in (1, 5, 50):
            lw = m.log_importance_weights(x.repeat(reps, 1, 1, 1), k, torch.Generator().manual_seed(k))
            b = iwae_bound(lw).view(reps, -1)
            bounds[k] = (b.mean(0), b.std(0) / reps**0.5)
        log_px = m.exact_log_px(x)
    for lo, hi in ((1, 5), (5, 50)):
        diff = bounds[hi][0] - bounds[lo][0]
        assert torch.all(diff > -4 * (bounds[hi][1] ** 2 + bounds[lo][1] ** 2).sqrt())
    assert torch.all(bounds[50][0] < log_px + 4 * bounds[50][1])
    assert torch.all(bounds[50][0] > bounds[1][0])


def test_analytic_and_monte_carlo_kl_agree(ppca):
    m, x = ppca
    n = 4000
    with torch.no_grad():
        a = elbo_terms(m, x, "analytic", n, torch.Generator().manual_seed(3))
        q = m.encode(x)
        z = q.sample((n,))
        terms = q.log_prob(z) - m.prior().log_prob(z)
        mc, se = terms.mean(0), terms.std(0) / n**0.5
    assert torch.all((a.kl - mc).abs() < 4 * se)
    torch.testing.assert_close(a.elbo, a.rec - a.kl)


def test_elbo_objective_weights_the_kl_by_beta(ppca):
    m, x = ppca
    cfg = ObjectiveConfig()
    s1 = elbo_objective(m, x, cfg, 1.0, torch.Generator().manual_seed(4))
    s2 = elbo_objective(m, x, cfg, 0.25, torch.Generator().manual_seed(4))
    expected = -(s1.stats["rec"] - 0.25 * s1.stats["kl"]).mean()
    torch.testing.assert_close(s2.loss, expected)
    torch.testing.assert_close(s1.loss, -s1.stats["elbo"].mean())


def test_kl_warmup_is_linear():
    cfg = ObjectiveConfig(beta=2.0, warmup_epochs=2)
    steps = [kl_weight(cfg, s, 10) for s in range(25)]
    assert (
        steps[0] == pytest.approx(0.1)
        and steps[9] == pytest.approx(1.0)
        and steps[19] == 2.0
        and steps[24] == 2.0
    )
    assert all(b > a for a, b in itertools.pairwise(steps[:20]))


def test_iwae_bound_of_equal_weights():
    lw = torch.full((7, 3), -2.5)
    torch.testing.assert_close(iwae_bound(lw), torch.full((3,), -2.5))


def test_single_gaussian_decoder_bound_is_below_closed_form():
    """A 1-D check by hand: z ~ N(0,1), x|z ~ N(z, 1): log p(x) = log N(x; 0, 2)."""
    m = LinearGaussianVAE(ModelConfig(latent_dim=1, gaussian_sigma=1.0), (1, 1, 1)).double()
    with torch.no_grad():
        m.decoder.weight.fill_(1.0)
        m.decoder.bias.zero_()
    x = torch.tensor([0.3, -1.7], dtype=torch.float64).view(2, 1, 1, 1)
    exact = Normal(0.0, 2**0.5).log_prob(x.flatten())
    torch.testing.assert_close(m.exact_log_px(x), exact.double())
    q = m.encode(x)
    assert isinstance(q, Independent)
    assert torch.all(elbo_terms(m, x, "analytic", 2000, torch.Generator().manual_seed(0)).elbo < exact)
