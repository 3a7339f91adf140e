"""The numbers a config may hold: `RANGES` (dotted key -> its range) and `check_numbers`, which refuses a
non-finite number or one outside its range, naming the one setting and its flag."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vaelab.config import _flatten
from vaelab.errors import ConfigError

if TYPE_CHECKING:
    from vaelab.config import Config


@dataclass(frozen=True)
class Range:
    """What a numeric setting must be: `test(value)` true, described as `text` (">= 1", "in (0, 1)")."""

    test: Callable[[Any], bool]
    text: str


def at_least(n: float, note: str = "") -> Range:
    """A range `>= n`, with an optional note on what the boundary means (e.g. "0: the default").

    Args:
        n: the smallest allowed value.
        note: shown in brackets after the rule.
    """
    return Range(lambda v: v >= n, f">= {n:g}" + (f" ({note})" if note else ""))


def above(n: float, unit: str = "") -> Range:
    """A range `> n`.

    Args:
        n: the value that must be exceeded.
        unit: appended to the rule ("seconds").
    """
    return Range(lambda v: v > n, f"> {n:g}" + (f" {unit}" if unit else ""))


# key -> the range of its value (of each size, for the lists model.hidden and model.conv_channels). Every float
# setting must also be finite (`check_numbers`); names are checked by the tables they pick from.
RANGES: dict[str, Range] = {
    "data.valid_fraction": Range(lambda v: 0 <= v < 1, "in [0, 1) (0: no validation split)"),
    "data.train_limit": at_least(0, "0: every training image"),
    "data.labelled": at_least(0, "0: keep every label"),
    "data.label_seed": at_least(-1, "-1: data.split_seed"),
    "data.labelled_share": Range(lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.hidden": at_least(1),
    "model.conv_channels": at_least(1),
    "model.latent_dim": at_least(1),
    "model.gaussian_sigma": above(0),
    "model.variance_floor": at_least(0),
    "objective.beta": at_least(0),
    "objective.warmup_epochs": at_least(0, "0: no warm-up"),
    "objective.kl_cycle_epochs": at_least(0, "0: no cycles"),
    "objective.kl_cycle_ramp": Range(lambda v: 0 < v <= 1, "in (0, 1]"),
    "objective.free_bits": at_least(0),
    "objective.num_samples": at_least(1),
    "train.epochs": at_least(0, "0: save the untrained model"),
    "train.batch_size": at_least(1),
    "train.lr": above(0),
    "train.lr_step_epochs": at_least(1),
    "train.lr_gamma": above(0),
    "train.weight_decay": at_least(0),
    "train.grad_clip": at_least(0, "0: no clipping"),
    "train.grad_clip_value": at_least(0, "0: no clipping"),
    "train.threads": at_least(0, "0: the default"),
    "train.eval_batch_size": at_least(1),
    "train.dist_timeout": above(0, "seconds"),
    "train.max_restarts": at_least(0),
    "train.restart_lr_factor": Range(lambda v: 0 < v < 1, "in (0, 1)"),
    "train.ema": Range(lambda v: 0 <= v < 1, "in [0, 1) (0: no weight averaging)"),
}


def _floats(value: Any, key: str) -> Iterator[tuple[str, float]]:
    """Every (key, float) below a setting's value: lists by position, mappings (model.extra) by key."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _floats(v, f"{key}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _floats(v, f"{key}[{i}]")
    elif isinstance(value, float):
        yield key, value


def check_numbers(cfg: Config, flags: Mapping[str, str] | None = None) -> None:
    """A ConfigError naming the one setting (and its flag) whose number is not finite or out of its range.

    Args:
        cfg: the config to check.
        flags: dotted key -> the command-line flag that sets it (e.g. "train.epochs" -> "--epochs"), named
            in the message beside the key.
    """
    flags = flags or {}

    def name(key: str) -> str:
        return f"{flags[key]} / {key}" if key in flags else key

    flat = _flatten(cfg.to_dict())
    for key, value in flat.items():
        for where, v in _floats(value, key):
            if not math.isfinite(v):
                raise ConfigError(f"{name(where)} must be a finite number, got {v}")
    for key, rule in RANGES.items():
        value = flat[key]
        if isinstance(value, list):
            if not all(rule.test(n) for n in value):
                lead = f"{flags[key]}: " if key in flags else ""
                raise ConfigError(f"{lead}need every {key} size {rule.text}, got {value}")
        elif not rule.test(value):
            raise ConfigError(f"{name(key)} must be {rule.text}, got {value}")
