"""The Gaussian decoder's mean map (`gaussian_mean`): identity by default, sigmoid for intensities in [0, 1]
(Kingma & Welling 2014's Frey Face decoder), normalising constant kept either way."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from vaelab.distributions.likelihoods import build_likelihood
from vaelab.errors import ConfigError

SHAPE = (1, 3, 2)  # not square


@pytest.mark.parametrize("variance", ["fixed", "shared", "per-pixel", "decoder"])
def test_sigmoid_means_lie_in_the_unit_interval_and_log_prob_is_the_normal_density(variance):
    g = torch.Generator().manual_seed(0)
    lik = build_likelihood(
        "gaussian", SHAPE, gaussian_variance=variance, gaussian_sigma=0.2, gaussian_mean="sigmoid"
    ).double()
    out = 6 * torch.randn(5, lik.factor * SHAPE[0], *SHAPE[1:], generator=g, dtype=torch.float64)
    dist = lik(out)
    loc_out = out[:, : SHAPE[0]]
    assert float(dist.mean.min()) > 0 and float(dist.mean.max()) < 1
    torch.testing.assert_close(dist.mean, torch.sigmoid(loc_out))
    x = torch.rand(5, *SHAPE, generator=g, dtype=torch.float64)
    s = dist.base_dist.scale
    expected = Normal(torch.sigmoid(loc_out), s).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(dist.log_prob(x), expected)
    if variance == "fixed":  # the constant: -log(s sqrt(2 pi)) a pixel, written out
        z = (x - torch.sigmoid(loc_out)) / 0.2
        by_hand = (-0.5 * z**2 - math.log(0.2) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
        torch.testing.assert_close(dist.log_prob(x), by_hand)


def test_the_default_mean_is_the_decoder_output_itself():
    lik = build_likelihood("gaussian", SHAPE, gaussian_variance="fixed")
    out = torch.tensor([-1.5, 0.2, 2.9, 0.0, 0.5, 1.0]).reshape(1, *SHAPE)
    torch.testing.assert_close(lik(out).mean, out)


def test_an_unknown_mean_map_lists_the_choices():
    with pytest.raises(ConfigError, match="identity.*sigmoid"):
        build_likelihood("gaussian", SHAPE, gaussian_mean="tanh")
