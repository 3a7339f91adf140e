"""The public protocol of every model: distributions with the right shapes, and importance weights."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, Normal

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models import MODELS, Autoencoder, build_model
from vaelab.models.autoencoder import fitted_gaussian

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
    cfg = ModelConfig(body=body, hidden=(64,), latent_dim=5, likelihood=lik, gaussian_variance="decoder")
    m = build_model(cfg, shape)
    x = torch.rand(3, *shape)
    if lik == "bernoulli":
        x = x.round()
    q = m.encode(x)
    assert q.batch_shape == (3,) and q.event_shape == (5,) and q.has_rsample
    assert m.prior().event_shape == (5,)
    p = m.decode(torch.randn(4, 3, 5))
    assert p.batch_shape == (4, 3) and p.event_shape == shape
    lw = m.log_importance_weights(x, 7)
    assert lw.shape == (7, 3) and torch.isfinite(lw).all()


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
    m = build_model(ModelConfig(hidden=(16,), latent_dim=3), (1, 4, 4))
    q = m.encode(torch.rand(2, 1, 4, 4))
    assert isinstance(q, Independent) and isinstance(q.base_dist, Normal)
    assert torch.all(q.stddev > 0)


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
