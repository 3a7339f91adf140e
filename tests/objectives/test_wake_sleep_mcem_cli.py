"""wake-sleep, reweighted-wake-sleep and mcem from the command line: they train the VAE on the 8x8 digits and
improve its ELBO, the models that cannot take them refuse in one line, and so do the ELBO's knobs they lack."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vaelab.cli import main
from vaelab.config import Config, ModelConfig, ObjectiveConfig
from vaelab.errors import ConfigError
from vaelab.models.cvae import CVAE
from vaelab.models.registry import get_spec
from vaelab.objectives import OBJECTIVES
from vaelab.train.validate import validate_config

from vaelab_testing import TINY_TRAIN

NEW = ("wake-sleep", "reweighted-wake-sleep", "mcem")


@pytest.mark.parametrize("name", NEW)
def test_registered_and_accepted_by_the_vae_and_linear_gaussian(name):
    assert name in OBJECTIVES
    for model in ("vae", "linear-gaussian"):
        assert name in get_spec(model).objectives
        validate_config(Config().replace(**{"model.name": model, "objective.name": name}))


@pytest.mark.parametrize("name", NEW)
def test_trains_the_vae_on_digits_and_the_elbo_rises(name, tmp_path):
    samples = ["--samples", "5"] if name == "reweighted-wake-sleep" else []
    run = tmp_path / "r"
    args = ["train", *TINY_TRAIN, "--epochs", "2", "--lr", "3e-3", "--no-figures", "--objective", name]
    assert main([*args, *samples, "--out", str(run)]) == 0
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    for r in history:
        for key in ("train_elbo", "train_rec", "train_kl", "test_elbo"):
            assert math.isfinite(r[key]), (key, r)
        assert r["train_kl"] >= 0
    assert history[1]["train_elbo"] > history[0]["train_elbo"] + 0.5
    assert history[1]["test_elbo"] > history[0]["test_elbo"] + 0.5
    if name == "mcem":
        assert 0.5 < history[1]["train_accept"] <= 1  # the HMC chains move
    if name == "reweighted-wake-sleep":
        assert history[1]["test_iwae"] >= history[1]["test_elbo"]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ["--model", "cvae", "--objective", "wake-sleep"],
            ("model 'cvae' trains with objective", "'wake-sleep'"),
        ),
        (["--model", "autoencoder", "--objective", "mcem"], ("model 'autoencoder'", "not 'mcem'")),
        (
            ["--objective", "mcem", "--beta", "2"],
            ("objective mcem has no KL weight", "objective.beta do not apply"),
        ),
        (
            ["--objective", "wake-sleep", "--warmup", "3", "--noise", "masking:0.3"],
            ("objective.warmup_epochs, objective.noise do not apply",),
        ),
        (
            ["--objective", "reweighted-wake-sleep", "--free-bits", "0.5"],
            ("objective.free_bits do not apply",),
        ),
    ],
)
def test_what_does_not_fit_is_one_line_and_writes_nothing(args, needles, tmp_path, capsys, one_line_error):
    code = main(["train", *TINY_TRAIN, *args, "--out", str(tmp_path / "r")])
    one_line_error(capsys, code, *needles)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", NEW)
def test_the_objective_refuses_a_labelled_model_itself(name):
    """A model registered with these objectives by a plugin is checked by the objective too."""
    model = CVAE(ModelConfig(hidden=(8,), latent_dim=2), (1, 8, 8))
    x, y = torch.rand(4, 1, 8, 8).round(), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ConfigError, match=f"objective {name} needs an unlabelled model"):
        OBJECTIVES[name](model, x, ObjectiveConfig(), 1.0, None, y=y)
