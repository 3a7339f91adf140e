"""Range errors name the one setting that broke and its value (issue 22, item 21's neighbours)."""

from __future__ import annotations

import dataclasses

import pytest

from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.errors import ConfigError
from vaelab.evaluate.settings import EvalSettings
from vaelab.models.hierarchical import HierarchicalVAE
from vaelab.objectives.elbo import check_schedule


@pytest.mark.parametrize("key", ["beta", "warmup_epochs", "kl_cycle_epochs", "free_bits"])
def test_a_negative_schedule_setting_is_named_alone(key: str) -> None:
    cfg = dataclasses.replace(ObjectiveConfig(), **{key: -1})
    with pytest.raises(ConfigError) as e:
        check_schedule(cfg)
    assert str(e.value) == f"need objective.{key} >= 0, got -1"


def test_hierarchical_sizes_are_named_alone() -> None:
    with pytest.raises(ConfigError, match=r"^model\.extra\.h1_dim must be an integer >= 1, got 0$"):
        HierarchicalVAE(ModelConfig(name="hierarchical", extra={"h1_dim": 0}), (1, 4, 4))
    with pytest.raises(ConfigError, match=r"^model\.latent_dim must be >= 1, got 0$"):
        HierarchicalVAE(ModelConfig(name="hierarchical", latent_dim=0), (1, 4, 4))


def test_an_infinite_distributed_timeout_is_refused() -> None:
    with pytest.raises(ConfigError, match="dist_timeout must be a positive number of seconds, got inf"):
        EvalSettings(dist_timeout=float("inf"))
