"""Tiny trained runs of each kind of model (8x8 digits, one epoch), shared by the export tests."""

from __future__ import annotations

import pytest
import torch

from vaelab.models.registry import model_config
from vaelab.train import train

from vaelab_testing import small_config

# name -> (model, config values): what matters is the contract each kind meets, not the fit.
KINDS = {
    "vae": ("vae", {}),
    "gaussian": (
        "vae",
        {"model.likelihood": "gaussian", "model.gaussian_variance": "decoder", "data.binarize": "none"},
    ),
    "logistic-conv": (
        "vae",
        {"model.likelihood": "discretized-logistic", "model.body": "conv", "data.binarize": "none"},
    ),
    "autoencoder": ("autoencoder", {}),
    "cvae": ("cvae", {}),
    "m2": ("m2", {"data.labelled": 50}),
    "gan": ("gan", {"model.body": "conv", "model.conv_channels": (8, 16), "model.latent_dim": 3}),
    "hierarchical": ("hierarchical", {"model.extra": {"h1_dim": 4, "h2_hidden": [8]}}),
    "pixelcnn": ("pixelcnn", {"model.extra": {"channels": 8, "blocks": 1, "first_kernel": 3}}),
    "planar": ("vae", {"model.posterior": "planar:2", "objective.kl": "mc"}),
    "iaf": ("vae", {"model.posterior": "iaf:2:16", "objective.kl": "mc"}),
    "sylvester": ("vae", {"model.posterior": "sylvester:2", "objective.kl": "mc"}),
}


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """name -> the folder of a tiny run of that kind."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export-runs")
    out = {}
    for name, (model, flat) in KINDS.items():
        base = model_config(model, small_config(**{"train.epochs": 1}))
        cfg = base.replace(**{"model.hidden": (32,), "model.latent_dim": 2, **flat})
        train(cfg, out=root / name)
        out[name] = root / name
    return out
