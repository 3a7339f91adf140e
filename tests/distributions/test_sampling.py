"""Generator-driven sampling: reproducible, right moments, and the reparameterisation trick's gradients."""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Categorical, Independent, MixtureSameFamily, Normal, kl_divergence

from vaelab.distributions.sampling import rsample, sample


def test_same_seed_same_draw():
    """A draw is loc + scale * the generator's normals: the same seed gives it again, another seed another."""
    loc, scale = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 3.0, 1.0])
    q = Independent(Normal(loc, scale), 1)
    a = rsample(q, (5,), torch.Generator().manual_seed(1))
    b = rsample(q, (5,), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (5, 3)
    torch.testing.assert_close(a, loc + scale * torch.randn(5, 3, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(a, rsample(q, (5,), torch.Generator().manual_seed(2)))


def test_normal_moments_within_four_standard_errors():
    loc, scale = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0])
    n = 50000
    z = rsample(Normal(loc, scale), (n,), torch.Generator().manual_seed(2))
    se_mean = scale / n**0.5
    assert torch.all((z.mean(0) - loc).abs() < 4 * se_mean)
    se_var = scale**2 * (2 / (n - 1)) ** 0.5
    assert torch.all((z.var(0) - scale**2).abs() < 4 * se_var)


def test_gradients_reach_mu_and_sigma_through_rsample():
    """d/dmu E[z^2] = 2 mu and d/dsigma E[z^2] = 2 sigma, estimated through z = mu + sigma * eps."""
    mu = torch.tensor(0.7, requires_grad=True)
    sigma = torch.tensor(1.3, requires_grad=True)
    n = 200000
    z = rsample(Normal(mu, sigma), (n,), torch.Generator().manual_seed(3))
    (z**2).mean().backward()
    # per-sample gradients 2z and 2 z eps have standard deviations below 2 * 3 * sigma, so 4 SE is generous
    tol = 4 * 2 * 3 * 1.3 / n**0.5
    assert abs(mu.grad.item() - 2 * 0.7) < tol
    assert abs(sigma.grad.item() - 2 * 1.3) < tol


def test_analytic_kl_equals_monte_carlo_kl():
    q = Independent(Normal(torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.3, 1.5, 0.8])), 1)
    p = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    n = 100000
    z = rsample(q, (n,), torch.Generator().manual_seed(4))
    terms = q.log_prob(z) - p.log_prob(z)
    se = terms.std() / n**0.5
    assert abs(float(terms.mean() - kl_divergence(q, p))) < 4 * float(se)


def test_bernoulli_and_mixture_sampling():
    g = torch.Generator().manual_seed(5)
    b = sample(Independent(Bernoulli(probs=torch.tensor([0.1, 0.9])), 1), (40000,), g)
    se = (0.09 / 40000) ** 0.5
    assert torch.all((b.mean(0) - torch.tensor([0.1, 0.9])).abs() < 4 * se)
    mix = MixtureSameFamily(
        Categorical(probs=torch.tensor([0.25, 0.75])),
        Independent(Normal(torch.tensor([[-5.0, 0.0], [5.0, 0.0]]), torch.ones(2, 2)), 1),
    )
    z = sample(mix, (40000,), g)
    assert z.shape == (40000, 2)
    share = (z[:, 0] > 0).double().mean()
    assert abs(float(share) - 0.75) < 4 * (0.75 * 0.25 / 40000) ** 0.5
