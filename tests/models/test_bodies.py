"""The body tables: `model.body` picks a builder from vaelab.nets.BODIES (the GAN from its own table), the old
names still import, a wrong name lists the choices, and a new builder is one registration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vaelab.baselines import gan
from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models import vae
from vaelab.models.registry import build_model
from vaelab.nets import BODIES, ConvEncoder, MLPEncoder, make_bodies


def test_the_tables_and_their_old_names():
    assert vae.BODIES is BODIES and vae.make_bodies is make_bodies
    assert list(BODIES) == ["mlp", "conv"] and list(gan.BODIES) == ["mlp", "conv"]
    assert gan.BODIES["conv"] is gan.dcgan and gan.BODIES["mlp"] is gan.mlp_gan
    enc, _ = make_bodies(ModelConfig(body="conv", hidden=(32,)), (1, 28, 28), 1)
    assert isinstance(enc, ConvEncoder) and enc.out_features == 32
    enc, _ = make_bodies(ModelConfig(body="mlp", hidden=(7, 5)), (1, 28, 28), 1)
    assert isinstance(enc, MLPEncoder) and enc.out_features == 5


@pytest.mark.parametrize("name", ["vae", "hierarchical", "cvae", "m2", "autoencoder", "gan"])
def test_an_unknown_body_lists_the_choices(name):
    with pytest.raises(ConfigError, match=r"^unknown body 'resnet'; choose one of: mlp, conv$"):
        build_model(ModelConfig(name=name, body="resnet"), (1, 28, 28))


def test_a_registered_body_is_what_the_model_is_built_from():
    class Flat(nn.Module):
        out_features = 3

        def __init__(self, shape):
            super().__init__()
            self.net = nn.Linear(int(torch.Size(shape).numel()), 3)

        def forward(self, x):
            return self.net(x.flatten(1))

    def flat(cfg, shape, factor):
        return Flat(shape), nn.Sequential(
            nn.Linear(cfg.latent_dim, factor * 4), nn.Unflatten(1, (factor, 2, 2))
        )

    try:
        BODIES.register("flat", flat)
        m = build_model(ModelConfig(body="flat", latent_dim=2), (1, 2, 2))
        assert isinstance(m.encoder, Flat) and m.head.in_features == 3
        assert m.log_importance_weights(torch.ones(5, 1, 2, 2), 4).shape == (4, 5)
    finally:
        BODIES.pop("flat", None)
    assert list(BODIES) == ["mlp", "conv"]
