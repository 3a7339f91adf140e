"""The GAN: one loss whose gradient is each player's own, losses that move as they should on tiny data, and
the observation model that AIS scores (Wu et al. 2017)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from vaelab.baselines.gan import GAN, gan_losses, gan_objective
from vaelab.config import DataConfig, ModelConfig, ObjectiveConfig
from vaelab.data import load_source
from vaelab.errors import ConfigError

SHAPE = (1, 8, 8)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """256 real 8x8 digits as grey levels in [0, 1]."""
    return load_source(DataConfig(name="digits")).train.images[:256].float() / 255.0


def make(body: str = "conv", **kw) -> GAN:
    torch.manual_seed(0)
    hidden = (64, 32) if body == "mlp" else (400,)
    return GAN(ModelConfig(body=body, hidden=hidden, latent_dim=8, conv_channels=(16, 32), **kw), SHAPE)


def grads(model: GAN, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    g = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True, retain_graph=True)
    return {n: (torch.zeros_like(p) if v is None else v) for (n, p), v in zip(model.named_parameters(), g)}


@pytest.mark.parametrize("body", ["conv", "mlp"])
def test_one_loss_gives_each_player_its_own_gradient(body, digits):
    """d(d_loss + g_loss) = d(d_loss) on the discriminator and d(g_loss) on the generator: each player's gradient
    is exactly that of its own loss (non-saturating -log D(G(z)) for the generator)."""
    m = make(body).double()
    x = digits[:16].double()
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    s = gan_losses(m, x, z)
    both = grads(m, (s["d_loss"] + s["g_loss"]).mean())
    # The same losses written the plain way, each player's parameters on their own.
    fake = m.images(z)
    d_only = (
        torch.nn.functional.softplus(-m.discriminator(x))
        + torch.nn.functional.softplus(m.discriminator(fake))
    ).mean()
    g_only = -torch.nn.functional.logsigmoid(m.discriminator(fake)).mean()
    gd, gg = grads(m, d_only), grads(m, g_only)
    for name, g in both.items():
        want = gd[name] if name.startswith("discriminator") else gg[name]
        torch.testing.assert_close(g, want, rtol=1e-9, atol=1e-12)
    assert any(v.abs().sum() > 0 for k, v in both.items() if k.startswith("generator"))
    assert any(v.abs().sum() > 0 for k, v in both.items() if k.startswith("discriminator"))


def _train(m: GAN, params, x: torch.Tensor, steps: int, lr: float) -> list[dict[str, float]]:
    opt = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(2)
    out = []
    for _ in range(steps):
        step = gan_objective(m, x, ObjectiveConfig(), 1.0, g)
        opt.zero_grad(set_to_none=True)
        step.loss.backward()
        opt.step()
        out.append({k: float(v.detach().mean()) for k, v in step.stats.items()})
    return out


def test_with_the_generator_frozen_the_discriminator_separates_real_from_fake(digits):
    m = make()
    before = {k: v.clone() for k, v in m.generator_net.state_dict().items()}
    hist = _train(m, m.discriminator.parameters(), digits[:64], 60, 2e-3)
    assert hist[-1]["d_loss"] < 0.3 * hist[0]["d_loss"]
    m.eval()
    with torch.no_grad():
        real = torch.sigmoid(m.discriminator(digits[64:192]))
        fake = torch.sigmoid(m.discriminator(m.generate(128, torch.Generator().manual_seed(9))))
    accuracy = ((real > 0.5).float().mean() + (fake < 0.5).float().mean()) / 2
    assert accuracy > 0.95  # on images it was not trained on, and fresh fakes
    for k, v in m.generator_net.state_dict().items():
        assert torch.equal(v, before[k]) or "running" in k or "num_batches" in k


def test_with_the_discriminator_frozen_the_generator_fools_it(digits):
    m = make()
    _train(m, m.discriminator.parameters(), digits[:64], 30, 2e-3)  # a discriminator worth fooling
    frozen = {k: v.clone() for k, v in m.discriminator.named_parameters()}
    hist = _train(m, m.generator_net.parameters(), digits[:64], 40, 2e-3)
    assert hist[0]["g_loss"] > 1.0 and hist[-1]["g_loss"] < 0.5 * hist[0]["g_loss"]
    assert hist[-1]["d_fake"] > 2 * hist[0]["d_fake"]
    for k, v in m.discriminator.named_parameters():
        assert torch.equal(v, frozen[k])


def test_observation_models_are_the_stated_densities():
    m = make(gaussian_sigma=0.2, likelihood="gaussian").eval()
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(4))
    x = torch.rand(5, *SHAPE)
    want = Normal(m.images(z), 0.2).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(m.decode(z).log_prob(x), want)
    assert m.decode(z).log_prob(x).shape == (5,)
    assert (
        "0.2^2" in m.describe_observation()
        and "not a likelihood of the GAN itself" in m.describe_observation()
    )
    b = make(likelihood="bernoulli").eval()
    xb = torch.bernoulli(torch.full((5, *SHAPE), 0.5))
    p = b.images(z)
    want = (xb * p.log() + (1 - xb) * (1 - p).log()).flatten(1).sum(1)
    torch.testing.assert_close(b.decode(z).log_prob(xb), want, rtol=1e-4, atol=1e-4)
    assert m.prior().log_prob(z).shape == (5,)
    assert float(m.prior().log_prob(torch.zeros(8))) == pytest.approx(-4 * math.log(2 * math.pi))


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="observation model"):
        make(likelihood="continuous-bernoulli")
    with pytest.raises(ConfigError, match="divisible by 8"):
        GAN(ModelConfig(body="conv", conv_channels=(8, 8, 8)), (1, 12, 12))
    with pytest.raises(ConfigError, match="gaussian_sigma"):
        make(gaussian_sigma=0.0)
