"""The table of objectives: complete from `import vaelab.objectives` whatever is imported first, the same object
under its old name, refusing unknown and duplicate names, and extended by `@register_objective`."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import vaelab.objectives
import vaelab.objectives.elbo
from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.errors import ConfigError
from vaelab.models.vae import VAE
from vaelab.objectives import OBJECTIVES, Step, register_objective

ORDER = [
    "elbo",
    "reconstruction",
    "iwae",
    "wake-sleep",
    "reweighted-wake-sleep",
    "mcem",
    "m2",
    "exact-nll",
    "gan",
]
ALL = set(ORDER)


def test_the_whole_table_and_its_old_name():
    assert set(OBJECTIVES) == ALL
    assert vaelab.objectives.elbo.OBJECTIVES is OBJECTIVES
    from vaelab.baselines import exact_nll_objective, gan_objective
    from vaelab.objectives.elbo import Objective, elbo_objective, reconstruction_objective
    from vaelab.objectives.iwae import iwae_objective
    from vaelab.objectives.mcem import mcem_objective
    from vaelab.objectives.semisupervised import m2_objective
    from vaelab.objectives.wake_sleep import reweighted_wake_sleep_objective, wake_sleep_objective

    assert Objective is vaelab.objectives.Objective
    assert {
        "elbo": elbo_objective,
        "reconstruction": reconstruction_objective,
        "iwae": iwae_objective,
        "wake-sleep": wake_sleep_objective,
        "reweighted-wake-sleep": reweighted_wake_sleep_objective,
        "mcem": mcem_objective,
        "m2": m2_objective,
        "exact-nll": exact_nll_objective,
        "gan": gan_objective,
    } == OBJECTIVES


@pytest.mark.parametrize("first", ["vaelab.objectives", "vaelab.baselines.gan", "vaelab.models.hierarchical"])
def test_the_table_is_whole_whichever_module_is_imported_first(first):
    code = f"import {first}\nfrom vaelab.objectives import OBJECTIVES\nprint(' '.join(sorted(OBJECTIVES)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert set(out.split()) == ALL


@pytest.mark.parametrize(
    "first", ["vaelab.baselines", "vaelab.baselines.pixelcnn", "vaelab.models", "vaelab", "vaelab.evaluate"]
)
def test_the_table_has_one_order_whichever_module_is_imported_first(first):
    code = f"import {first}\nfrom vaelab.objectives import OBJECTIVES\nprint(' '.join(OBJECTIVES))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ORDER


def test_an_unknown_name_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"^unknown objective 'elbow'; choose one of: ") as e:
        OBJECTIVES.lookup("elbow")
    assert set(str(e.value).split(": ")[1].split(", ")) == ALL


def test_a_taken_name_is_refused():
    def other(model, x, cfg, beta, generator, *, y=None):  # pragma: no cover - never called
        raise AssertionError

    with pytest.raises(ConfigError, match=r"^objective 'elbo' is already registered; pass replace=True"):
        register_objective("elbo")(other)
    assert OBJECTIVES["elbo"] is vaelab.objectives.elbo.elbo_objective


def test_register_objective_adds_one_that_the_table_then_holds():
    try:

        @register_objective("mean-pixel")
        def mean_pixel(model, x, cfg, beta, generator, *, y=None) -> Step:
            return Step(x.mean(), {"mean": x.flatten(1).mean(1)})

        assert OBJECTIVES.lookup("mean-pixel") is mean_pixel
        x = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 1.0]]]])
        model = VAE(ModelConfig(hidden=(4,), latent_dim=2), (1, 2, 2))
        step = OBJECTIVES["mean-pixel"](model, x, ObjectiveConfig(), 1.0, None)
        assert float(step.loss) == 0.5
        assert step.stats["mean"].tolist() == [0.75, 0.25]
    finally:
        OBJECTIVES.pop("mean-pixel", None)
    assert set(OBJECTIVES) == ALL
