"""The public protocol of every model: distributions with the right shapes, and importance weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models import MODELS, Autoencoder, build_model
from vaelab.models.autoencoder import fitted_gaussian
from vaelab.models.vae import MIN_SCALE

CASES = [
    ("mlp", (1, 28, 28), "bernoulli"),
    ("mlp", (1, 8, 8), "gaussian"),
    ("conv", (1, 28, 28), "bernoulli"),
    ("conv", (1, 28, 28), "continuous-bernoulli"),
    ("conv", (3, 64, 64), "discretized-logistic"),
    ("conv", (3, 64, 64), "gaussian"),
]


@pytest.mark.parametrize(("body", "shape", "lik"), CASES)
def test_vae_protocol_shapes(body, shape, lik):
    """The shapes of q(z|x), p(z) and p(x|z), and their values: p(z) is N(0, I), a [K, B] batch of z decodes as
    each z alone, and the weights are log p(x|z) + log p(z) - log q(z|x) at the generator's draws."""
    cfg = ModelConfig(body=body, hidden=(64,), latent_dim=5, likelihood=lik, gaussian_variance="decoder")
    torch.manual_seed(0)
    m = build_model(cfg, shape).eval()
    x = torch.rand(3, *shape)
    if lik == "bernoulli":
        x = x.round()
    q = m.encode(x)
    assert q.batch_shape == (3,) and q.event_shape == (5,) and q.has_rsample
    prior = m.prior()
    assert prior.event_shape == (5,)
    torch.testing.assert_close(prior.mean, torch.zeros(5), rtol=0, atol=0)
    torch.testing.assert_close(prior.stddev, torch.ones(5), rtol=0, atol=0)
    z = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(prior.log_prob(z), -0.5 * (z**2).sum(-1) - 2.5 * math.log(2 * math.pi))
    with torch.no_grad():
        p = m.decode(z)
        assert p.batch_shape == (4, 3) and p.event_shape == shape
        one_by_one = torch.stack(
            [torch.stack([m.decode(z[k, b]).log_prob(x[b]) for b in range(3)]) for k in range(4)]
        )
        torch.testing.assert_close(p.log_prob(x), one_by_one, rtol=1e-5, atol=1e-4)
        lw = m.log_importance_weights(x, 7, torch.Generator().manual_seed(2))
        zk = q.mean + q.stddev * torch.randn(7, 3, 5, generator=torch.Generator().manual_seed(2))
        want = m.decode(zk).log_prob(x) + prior.log_prob(zk) - q.log_prob(zk)
    assert lw.shape == (7, 3)
    torch.testing.assert_close(lw, want)


def test_log_importance_weights_identity():
    """log w = log p(x|z) + log p(z) - log q(z|x) at the same z (same generator seed)."""
    m = build_model(ModelConfig(hidden=(16,), latent_dim=3), (1, 4, 4))
    x = torch.rand(5, 1, 4, 4).round()
    lw = m.log_importance_weights(x, 2, torch.Generator().manual_seed(0))
    q = m.encode(x)
    eps = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    z = q.mean + q.stddev * eps
    expected = m.decode(z).log_prob(x) + m.prior().log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(lw, expected)


def test_conv_body_needs_divisible_sides():
    with pytest.raises(ConfigError, match="divisible by 4"):
        build_model(ModelConfig(body="conv", conv_channels=(8, 8)), (1, 30, 30))


def test_unknown_model_lists_choices():
    with pytest.raises(ConfigError, match="unknown model 'gan2'; choose one of: " + ", ".join(MODELS)):
        build_model(ModelConfig(name="gan2"), (1, 8, 8))


def test_autoencoder_codes_are_point_masses():
    m = Autoencoder(ModelConfig(hidden=(16,), latent_dim=2), (1, 8, 8))
    x = torch.rand(4, 1, 8, 8)
    q = m.encode(x)
    torch.testing.assert_close(q.mean, m.code(x))
    torch.testing.assert_close(q.rsample(), m.code(x))
    assert not hasattr(m, "prior") and not hasattr(m, "log_importance_weights")


def test_fitted_gaussian_recovers_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]])
    z = torch.randn(20000, 2, generator=g) @ torch.linalg.cholesky(cov).T + torch.tensor([1.0, -3.0])
    fit = fitted_gaussian(z)
    torch.testing.assert_close(fit.loc, torch.tensor([1.0, -3.0]), atol=4 * (2.0 / 20000) ** 0.5, rtol=0)
    torch.testing.assert_close(fit.covariance_matrix, cov, atol=0.06, rtol=0)


def test_encoder_is_a_diagonal_gaussian():
    """q(z|x) = N(loc, diag(scale^2)) with (loc, raw) the head's two halves and scale = softplus(raw) + MIN_SCALE;
    each image's q depends on that image alone."""
    torch.manual_seed(0)
    m = build_model(ModelConfig(hidden=(16,), latent_dim=3), (1, 4, 4))
    x = torch.rand(5, 1, 4, 4)
    q = m.encode(x)
    assert isinstance(q, Independent) and isinstance(q.base_dist, Normal)
    with torch.no_grad():
        loc, raw = m.head(m.encoder(x)).split(3, dim=-1)
        scale = torch.nn.functional.softplus(raw) + MIN_SCALE
        torch.testing.assert_close(q.mean, loc)
        torch.testing.assert_close(q.stddev, scale)
        z = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
        by_hand = (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        torch.testing.assert_close(q.log_prob(z), by_hand)
        for i in range(5):
            alone = m.encode(x[i : i + 1])
            torch.testing.assert_close(alone.mean[0], q.mean[i])
            torch.testing.assert_close(alone.stddev[0], q.stddev[i])
    assert (q.mean[0] - q.mean[1]).abs().max() > 1e-4  # the code depends on the image


def test_gated_layer_is_linear_times_sigmoid_gate():
    from vaelab.nets.mlp import GatedDense, mlp

    torch.manual_seed(0)
    layer = GatedDense(6, 4)
    x = torch.randn(5, 6)
    w, b = layer.linear.weight, layer.linear.bias
    expected = (x @ w[:4].T + b[:4]) * torch.sigmoid(x @ w[4:].T + b[4:])
    torch.testing.assert_close(layer(x), expected)
    net = mlp(6, (4, 3), 2, "gated")
    assert [type(m).__name__ for m in net] == ["GatedDense", "GatedDense", "Linear"]
    assert net(x).shape == (5, 2)


def test_gated_vae_trains_and_conv_refuses_gated():
    cfg = ModelConfig(hidden=(16, 16), latent_dim=3, activation="gated")
    m = build_model(cfg, (1, 8, 8))
    assert sum(type(x).__name__ == "GatedDense" for x in m.modules()) == 4
    x = torch.rand(8, 1, 8, 8).round()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = -m.log_importance_weights(x, 1, torch.Generator().manual_seed(0)).mean()
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first - 5.0
    with pytest.raises(ConfigError, match="applies to MLP layers only"):
        build_model(ModelConfig(body="conv", hidden=(16,), latent_dim=3, activation="gated"), (1, 28, 28))
