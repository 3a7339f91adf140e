"""KL schedules, free bits and denoising, by value: each is checked against a direct computation."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.errors import ConfigError
from vaelab.models.linear import LinearGaussianVAE
from vaelab.models.vampprior import VampPriorVAE
from vaelab.objectives.elbo import check_schedule, elbo_objective, kl_weight
from vaelab.objectives.iwae import iwae_objective
from vaelab.objectives.noise import corrupt, parse_noise


@pytest.fixture
def ppca():
    torch.manual_seed(0)
    m = LinearGaussianVAE(ModelConfig(latent_dim=3, gaussian_sigma=0.5), (1, 2, 3)).double()
    with torch.no_grad():
        m.decoder.weight.normal_(0, 1.0)
        m.encoder.weight.normal_(0, 0.3)
    x = torch.randn(10, 1, 2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return m, x


def test_cyclical_schedule_by_value():
    """Fu et al. 2019: a cycle of 2 epochs (20 steps), rising over its first half, then flat at beta."""
    cfg = ObjectiveConfig(beta=2.0, kl_cycle_epochs=2, kl_cycle_ramp=0.5)
    got = [kl_weight(cfg, s, 10) for s in range(45)]
    want = [2.0 * min(1.0, (s % 20) / 10) for s in range(45)]
    assert got == pytest.approx(want)
    assert got[0] == 0 and got[5] == pytest.approx(1.0) and got[10] == 2.0 and got[20] == 0 and got[25] == 1.0


def test_schedules_are_checked():
    with pytest.raises(ConfigError, match="choose one KL schedule"):
        check_schedule(ObjectiveConfig(warmup_epochs=2, kl_cycle_epochs=4))
    with pytest.raises(ConfigError, match="kl_cycle_ramp must be in"):
        check_schedule(ObjectiveConfig(kl_cycle_epochs=4, kl_cycle_ramp=0))
    with pytest.raises(ConfigError, match="free_bits >= 0"):
        check_schedule(ObjectiveConfig(free_bits=-1))


def _per_dim_kl(m, x):
    q = m.encode(x)
    return kl_divergence(q.base_dist, Normal(0.0, 1.0)).mean(0)  # [D]: batch means per dimension


@pytest.mark.parametrize("lam", [0.0, 1.8, 3.0])
def test_free_bits_elbo_by_value(ppca, lam):
    """loss = -mean rec + beta * sum_d max(lambda, mean_batch KL_d)."""
    m, x = ppca
    beta = 0.7
    cfg = ObjectiveConfig(free_bits=lam)
    step = elbo_objective(m, x, cfg, beta, torch.Generator().manual_seed(2))
    kl_d = _per_dim_kl(m, x)
    want = -step.stats["rec"].mean() + beta * torch.clamp(kl_d, min=lam).sum()
    torch.testing.assert_close(step.loss, want)
    if lam == 1.8:
        assert (kl_d < lam).any() and (kl_d > lam).any()  # some dimensions under lambda, some over


def test_free_bits_remove_the_kl_gradient_below_lambda(ppca):
    """With lambda above every dimension's KL, the gradient is the reconstruction's alone."""
    m, x = ppca
    lam = float(_per_dim_kl(m, x).max().detach()) + 1.0
    m.zero_grad()
    elbo_objective(
        m, x, ObjectiveConfig(free_bits=lam), 1.0, torch.Generator().manual_seed(3)
    ).loss.backward()
    with_fb = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    rec = elbo_objective(m, x, ObjectiveConfig(), 1.0, torch.Generator().manual_seed(3)).stats["rec"]
    (-rec.mean()).backward()
    for a, p in zip(with_fb, m.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_free_bits_iwae_by_value(ppca):
    """IWAE: -IWAE_K + beta * sum_d relu(lambda - mean over batch and draws of log q_d - log p_d)."""
    m, x = ppca
    k, lam = 4, 0.8
    step = iwae_objective(
        m, x, ObjectiveConfig(num_samples=k, free_bits=lam), 1.0, torch.Generator().manual_seed(4)
    )
    q = m.encode(x)
    eps = torch.randn(k, len(x), 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    z = q.mean + q.stddev * eps
    groups = (q.base_dist.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).mean((0, 1))
    want = -step.stats["iwae"].mean() + torch.relu(lam - groups).sum()
    torch.testing.assert_close(step.loss, want)


def test_free_bits_on_a_mixture_prior_act_on_the_whole_latent():
    """The VampPrior does not factorise: one group, lambda * D."""
    torch.manual_seed(0)
    m = VampPriorVAE(ModelConfig(hidden=(8,), latent_dim=2, extra={"pseudo_inputs": 3}), (1, 2, 2))
    x = (torch.rand(5, 1, 2, 2) > 0.5).float()
    lam = 5.0
    step = elbo_objective(
        m, x, ObjectiveConfig(kl="mc", free_bits=lam), 1.0, torch.Generator().manual_seed(0)
    )
    kl = step.stats["kl"].mean()
    assert float(kl.detach()) < 2 * lam
    torch.testing.assert_close(step.loss, -step.stats["rec"].mean() + torch.clamp(kl, min=2 * lam))


def test_denoising_scores_the_clean_image(ppca):
    """The encoder sees the masked image (noise drawn first, then eps), the likelihood scores the clean one."""
    m, x = ppca
    m.train()
    cfg = ObjectiveConfig(noise="masking", noise_level=0.5, num_samples=2)
    step = elbo_objective(m, x, cfg, 1.0, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    seen = x * (torch.rand(x.shape, generator=g, dtype=x.dtype) >= 0.5)
    q = m.encode(seen)
    z = q.mean + q.stddev * torch.randn(2, len(x), 3, generator=g, dtype=x.dtype)
    torch.testing.assert_close(step.stats["rec"], m.decode(z).log_prob(x).mean(0))
    torch.testing.assert_close(step.stats["kl"], kl_divergence(q, m.prior()))
    m.eval()  # evaluation never corrupts
    clean = elbo_objective(m, x, cfg, 1.0, torch.Generator().manual_seed(5))
    plain = elbo_objective(m, x, ObjectiveConfig(num_samples=2), 1.0, torch.Generator().manual_seed(5))
    torch.testing.assert_close(clean.stats["elbo"], plain.stats["elbo"])


def test_noise_kinds():
    """Each corruption equals its formula on the generator's own draws (u ~ U(0, 1), eps ~ N(0, 1)), so the
    level is checked exactly: masking keeps x where u >= p, gaussian is clamp(x + sigma * eps, 0, 1)."""
    x = torch.rand(400, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    masked = corrupt(x, "masking", 0.3, torch.Generator().manual_seed(1))
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(masked, torch.where(u >= 0.3, x, torch.zeros(())))
    zeroed = float((masked == 0).float().mean())
    se = (0.3 * 0.7 / x.numel()) ** 0.5
    assert abs(zeroed - 0.3) < 4 * se  # the masked share is p
    noisy = corrupt(x, "gaussian", 0.3, torch.Generator().manual_seed(1))
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(noisy, (x + 0.3 * eps).clamp(0.0, 1.0))
    inside = (noisy > 0) & (noisy < 1)  # unclamped pixels: (x~ - x) / sigma is the draw itself
    assert 0.5 < float(inside.float().mean()) < 1 and (noisy == 0).any() and (noisy == 1).any()
    torch.testing.assert_close((noisy - x)[inside] / 0.3, eps[inside])
    assert parse_noise("gaussian:0.3") == ("gaussian", 0.3) and parse_noise("masking:0.5") == ("masking", 0.5)
    for bad, msg in (
        ("salt:0.1", "unknown noise 'salt'"),
        ("masking", "KIND:LEVEL"),
        ("masking:1.5", "in \\(0, 1\\)"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse_noise(bad)
