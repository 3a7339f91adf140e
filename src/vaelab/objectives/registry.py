"""The table of training objectives (`objective.name`), filled where each objective is defined, in the
spirit of `torch.distributions.kl.register_kl`:

    @register_objective("iwae")
    def iwae_objective(model, x, cfg, beta, generator, *, y=None) -> Step: ...

An objective takes the model, a batch x [B, C, H, W], the `ObjectiveConfig`, the KL weight beta of this step
and the run's `torch.Generator` (labels come as the keyword `y=` for models that need them), and returns a
`Step`: the scalar loss to minimise and per-datum statistics [B] to report. `vaelab.objectives` imports every
module that registers one, so the whole table is `vaelab.objectives.OBJECTIVES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

import torch

from vaelab.registry import Registry


class Step(NamedTuple):
    """A training objective's output: the scalar loss to minimise and per-datum statistics to report."""

    loss: torch.Tensor
    stats: dict[str, torch.Tensor]


# fn(model, x, cfg, beta, generator) -> Step, and `y=labels` as a keyword for models that need labels.
Objective = Callable[..., Step]

OBJECTIVES: Registry[Objective] = Registry("objective")

F = TypeVar("F", bound=Objective)


def register_objective(name: str, *, replace: bool = False) -> Callable[[F], F]:
    """A decorator adding an objective to OBJECTIVES under `name` (`objective.name`, `--objective`).

    Args:
        name: the name runs choose it by; a name already taken is a ConfigError unless `replace`.
        replace: allow replacing the objective registered under `name`.
    """
    return OBJECTIVES.register(name, replace=replace)
