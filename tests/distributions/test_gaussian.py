"""The diagonal-Gaussian head against its closed form, its draws and stop-gradient copy, and `log_mean_exp`."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from vaelab.distributions.gaussian import MIN_SCALE, diagonal_gaussian, draw_z, factorised, stopped
from vaelab.distributions.logmath import log_mean_exp
from vaelab.errors import ConfigError


def test_the_head_is_loc_then_softplus_scale():
    params = torch.tensor([[0.5, -1.0, 0.0, 20.0], [2.0, 3.0, -30.0, 1.0]], dtype=torch.float64)
    q = diagonal_gaussian(params)
    assert q.batch_shape == (2,) and q.event_shape == (2,)
    torch.testing.assert_close(q.base_dist.loc, params[:, :2])
    scale = torch.log1p(torch.exp(params[:, 2:])) + MIN_SCALE
    torch.testing.assert_close(q.base_dist.scale, scale)
    z = torch.tensor([[0.1, 0.2], [-0.3, 0.4]], dtype=torch.float64)
    by_hand = (-0.5 * ((z - params[:, :2]) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    torch.testing.assert_close(q.log_prob(z), by_hand)
    assert float(q.base_dist.scale.min()) >= MIN_SCALE  # softplus(-30) ~ 1e-13, kept above the floor


def test_the_models_share_the_one_head():
    from vaelab.models import cvae, hierarchical, vae

    assert hierarchical.gaussian is diagonal_gaussian
    assert vae.MIN_SCALE == MIN_SCALE
    assert cvae.diagonal_gaussian is diagonal_gaussian and vae.diagonal_gaussian is diagonal_gaussian


def test_draws_are_loc_plus_scale_times_the_generators_normals():
    q = diagonal_gaussian(torch.tensor([[1.0, -2.0, 0.3, -0.7]]))
    z = draw_z(q, 3, torch.Generator().manual_seed(5))
    eps = torch.randn(3, 1, 2, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(z, q.base_dist.loc + q.base_dist.scale * eps)


def test_stopped_is_the_same_density_without_gradients():
    params = torch.tensor([[0.2, -0.1, 0.4, 1.5]], requires_grad=True)
    q = diagonal_gaussian(params)
    z = torch.tensor([[[0.3, 0.3]]])
    s = stopped(q)
    torch.testing.assert_close(s.log_prob(z), q.log_prob(z))
    assert not s.log_prob(z).requires_grad and q.log_prob(z).requires_grad
    assert factorised(q) is q.base_dist and factorised(Normal(0.0, 1.0)) is None
    with pytest.raises(ConfigError, match=r"^DReG needs a diagonal Gaussian q\(z\|x\), got Normal$"):
        stopped(Normal(torch.zeros(2), torch.ones(2)))


def test_the_old_names_still_import_from_objectives_elbo():
    from vaelab.objectives import elbo

    assert (elbo.draw_z, elbo.stopped, elbo.factorised) == (draw_z, stopped, factorised)


def test_log_mean_exp_is_the_log_of_the_mean():
    w = torch.tensor([[1.0, 2.0], [3.0, 6.0], [8.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(log_mean_exp(w.log()), w.mean(0).log())
    torch.testing.assert_close(log_mean_exp(w.log(), dim=1), w.mean(1).log())
    huge = torch.tensor(
        [1000.0, 1000.0 + math.log(3.0)], dtype=torch.float64
    )  # exp overflows; the mean is 2e1000
    torch.testing.assert_close(log_mean_exp(huge), torch.tensor(1000.0 + math.log(2.0), dtype=torch.float64))


def test_log_mean_exp_is_shared():
    from vaelab.inference import ais
    from vaelab.objectives.elbo import iwae_bound

    assert ais.log_mean_exp is log_mean_exp
    log_w = torch.tensor([[0.0, -1.0], [math.log(3.0), -1.0]])
    torch.testing.assert_close(iwae_bound(log_w), torch.tensor([math.log(2.0), -1.0]))


def test_an_independent_normal_of_two_batch_dims_does_not_factorise():
    q = Independent(Normal(torch.zeros(2, 3), torch.ones(2, 3)), 2)
    assert factorised(q) is None
