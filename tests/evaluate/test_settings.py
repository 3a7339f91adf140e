"""EvalSettings: checked once when made, the same table behind evaluate's keywords and vaelab eval's flags."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re

import numpy as np
import pytest
from gaussian_weights import GaussianWeights, blank_split

from vaelab.commands.eval import register, settings_from
from vaelab.errors import ConfigError
from vaelab.evaluate import EvalSettings, evaluate
from vaelab.evaluate.settings import flags


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"importance": 0}, "--importance K must be >= 1, got 0"),
        ({"ais": 1}, "--ais T must be >= 2 intermediate distributions, got 1"),
        ({"chains": 0}, "--chains C must be >= 1, got 0"),
        ({"leapfrog": -1}, "--leapfrog L must be >= 1, got -1"),
        ({"bdmc": -2}, "--bdmc N must be >= 0, got -2"),
        ({"schedule": "cubic"}, "unknown AIS schedule 'cubic'; choose one of: sigmoid, geometric, linear"),
        ({"quality": -1}, "--quality N must be >= 0, got -1"),
        ({"limit": 0}, "--limit must be >= 1, got 0"),
        ({"split": "holdout"}, "unknown split 'holdout'; choose one of: test, valid, train"),
        ({"which": "latest"}, "--checkpoint must be best or last, got 'latest'"),
        ({"importance": 2.5}, "--importance must be an integer, got 2.5"),
        ({"limit": "10"}, "--limit must be an integer, got '10'"),
        ({"dist_timeout": 0}, "dist_timeout must be a positive number of seconds, got 0"),
    ],
)
def test_each_bad_value_is_one_config_error_naming_its_flag(changes, message):
    with pytest.raises(ConfigError) as e:
        EvalSettings(**changes)
    assert str(e.value) == message
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        EvalSettings().replace(**changes)


def test_settings_are_frozen_and_integral_values_become_ints():
    s = EvalSettings(importance=np.int64(64), limit=np.int32(5))
    assert s.importance == 64 and type(s.importance) is int and type(s.limit) is int
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.importance = 3
    assert s.bdmc_steps == 500 and EvalSettings(ais=7).bdmc_steps == 7


def _parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="vaelab")
    register(root.add_subparsers())
    return root


def test_the_command_line_defaults_are_the_settings_defaults():
    """`vaelab eval RUN` with no flags asks for the default EvalSettings, except that it draws progress bars
    (--quiet turns them off); every flag fills its field."""
    args = _parser().parse_args(["eval", "run"])
    assert settings_from(args) == EvalSettings(progress=True)
    argv = ["eval", "run", "--importance", "7", "--ais", "3", "--schedule", "linear", "--decomposition"]
    argv += ["--limit", "9", "--split", "valid", "--checkpoint", "last", "--data-dir", "d", "--quiet"]
    got = settings_from(_parser().parse_args(argv))
    assert got == EvalSettings(
        importance=7,
        ais=3,
        schedule="linear",
        decomposition=True,
        limit=9,
        split="valid",
        which="last",
        data_dir="d",
        progress=False,
    )


def test_every_field_but_the_timeout_has_a_flag_and_evaluate_takes_each_by_name():
    names = [f.name for f in dataclasses.fields(EvalSettings)]
    assert [name for name, *_ in flags()] == [n for n in names if n != "dist_timeout"]
    params = inspect.signature(evaluate).parameters
    assert [p for p in params if p in names] == names
    assert all(params[f.name].default == f.default for f in dataclasses.fields(EvalSettings))


def test_evaluate_keywords_override_given_settings_and_unknown_ones_are_refused():
    model, data = GaussianWeights(1.0, 1.2), blank_split(6)
    base = EvalSettings(importance=30, seed=4)
    a = evaluate(model, data, settings=base, importance=40)
    b = evaluate(model, data, importance=40, seed=4)
    assert (
        a["importance"]["num_samples"] == 40 and a["importance"]["per_datum"] == b["importance"]["per_datum"]
    )
    with pytest.raises(TypeError, match="unknown evaluation setting 'samples'"):
        evaluate(model, data, samples=3)


def test_the_help_names_are_the_real_tables() -> None:
    from vaelab.data import SPLIT_SEED_OFFSET
    from vaelab.evaluate.settings import SCHEDULE_NAMES, SPLIT_NAMES
    from vaelab.inference.ais import SCHEDULES

    assert tuple(SCHEDULES) == SCHEDULE_NAMES
    assert tuple(SPLIT_SEED_OFFSET) == SPLIT_NAMES


def test_the_estimator_table_is_whole_from_the_package() -> None:
    import subprocess
    import sys

    code = "from vaelab.evaluate import ESTIMATORS\nprint(' '.join(ESTIMATORS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert sorted(out.split()) == sorted(
        ["exact", "elbo", "importance", "psis", "ais", "bdmc", "classification", "decomposition", "quality"]
    )
