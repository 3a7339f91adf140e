"""Configs: defaults, files, key=value overrides with types, and clear errors."""

from __future__ import annotations

import json
import re

import pytest

from vaelab.config import Config, build_config, parse_assignments
from vaelab.errors import ConfigError
from vaelab.ranges import RANGES, check_numbers


def test_overrides_are_typed():
    cfg = Config().replace(
        **{"train.lr": "3e-4", "model.hidden": "200,200", "data.data_dir": "none", "train.progress": "no"}
    )
    assert cfg.train.lr == 3e-4 and cfg.model.hidden == (200, 200) and cfg.data.data_dir is None
    assert cfg.train.progress is False


def test_round_trip_through_dict():
    cfg = Config().replace(**{"model.hidden": (500, 300), "objective.beta": 4.0, "model.extra": {"k": 5}})
    again = Config.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_file_then_flags(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  hidden: [500]\n  latent_dim: 3\ntrain:\n  optimizer: adagrad\n  lr: 0.01\n")
    cfg = build_config(f, {"train.lr": "0.02"})
    assert cfg.model.hidden == (500,) and cfg.model.latent_dim == 3
    assert cfg.train.optimizer == "adagrad" and cfg.train.lr == 0.02


def test_a_mapping_in_a_file_or_flag_adds_to_the_models_own_defaults(tmp_path):
    """m2's registered model.extra (active_sd, code_cov) stays when a file or --set names other entries; the
    later source wins entry by entry; an empty mapping clears the defaults."""
    from vaelab.models.registry import model_config

    base = model_config("m2")
    defaults = dict(base.model.extra)
    assert defaults == {"active_sd": 0.1, "code_cov": "full"}
    f = tmp_path / "m.yaml"
    f.write_text("model:\n  extra:\n    alpha: 2\n    code_cov: diagonal\n")
    cfg = build_config(f, {"model.extra": "{alpha: 3, classify: q}"}, base=base)
    assert cfg.model.extra == {"active_sd": 0.1, "code_cov": "diagonal", "alpha": 3, "classify": "q"}
    assert build_config(f, base=base).model.extra == {"active_sd": 0.1, "code_cov": "diagonal", "alpha": 2}
    assert build_config(None, {"model.extra": "{}"}, base=base).model.extra == {}
    assert build_config(f).model.extra == {"alpha": 2, "code_cov": "diagonal"}  # no defaults: the file's own
    with pytest.raises(ConfigError, match=r"^model.extra: expected a mapping, got 5$"):
        build_config(None, {"model.extra": "5"}, base=base)


def test_a_flag_naming_one_entry_of_a_mapping_reads_its_value_as_yaml_would():
    """`--set model.extra.alpha=30` gives the number 30, `batch_norm=true` True, as the same lines in a file
    would; a text stays text (a column kind) and a Python caller's value is kept as given."""
    cfg = build_config(
        None, {"model.extra.alpha": "30", "model.extra.batch_norm": "true", "model.extra.h": "[1, 2]"}
    )
    assert cfg.model.extra == {"alpha": 30, "batch_norm": True, "h": [1, 2]}
    assert build_config(None, {"data.columns.age": "continuous"}).data.columns == {"age": "continuous"}
    f_cfg = Config().replace(**{"model.extra": {"alpha": "30"}})
    assert f_cfg.model.extra == {"alpha": "30"}  # not through build_config's flags: kept as given
    with pytest.raises(ConfigError, match=r"^model.extra.alpha: not a valid YAML value: '\[1'$"):
        build_config(None, {"model.extra.alpha": "[1"})


@pytest.mark.parametrize(
    ("flat", "message"),
    [
        ({"train.lrr": "1"}, "unknown config key 'train.lrr'; train has: epochs"),
        ({"bogus.x": "1"}, "unknown config key 'bogus.x'; sections are: data, model"),
        ({"train.epochs": "2.5"}, "train.epochs: expected an integer, got '2.5'"),
        ({"train.lr": "fast"}, "train.lr: expected a number"),
        ({"train.progress": "maybe"}, "train.progress: expected true or false"),
    ],
)
def test_bad_overrides(flat, message):
    with pytest.raises(ConfigError, match=message):
        Config().replace(**flat)


def test_bad_files(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML/JSON at line"):
        build_config(f)
    f.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        build_config(f)
    with pytest.raises(ConfigError, match="cannot read config file"):
        build_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text", ["", "\n  \n", "# only a comment\n", "---\n"])
def test_a_config_file_without_settings_is_refused(tmp_path, text):
    """An empty (or truncated to nothing) file trained on every default without a word."""
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(
        ConfigError, match=f"^{re.escape(str(f))}: holds no settings \\(empty, or comments only\\)"
    ):
        build_config(f)
    f.write_text("{}\n")  # an explicit empty mapping says "the defaults" on purpose
    assert build_config(f) == Config()


def test_an_empty_config_path_is_refused():
    """`--config ""` said "cannot read config file .: [Errno 21] Is a directory: '.'"."""
    with pytest.raises(ConfigError, match="^the config file is an empty path: name a YAML or JSON file$"):
        build_config("")


def test_assignments():
    assert parse_assignments(["a.b=1", "c.d = x=y"]) == {"a.b": "1", "c.d": "x=y"}
    with pytest.raises(ConfigError, match="--set expects key=value"):
        parse_assignments(["novalue"])


def test_shipped_configs_load():
    """Each shipped config, read as `vaelab train --config` reads it (its model's defaults, then the file), holds
    every value the file sets, and passes the checks a training makes before it reads any data."""
    from pathlib import Path

    from vaelab.config import load_config_file
    from vaelab.models.registry import model_config
    from vaelab.train.validate import validate_config

    files = sorted(Path(__file__).resolve().parent.parent.joinpath("configs").glob("*.yaml"))
    assert len(files) >= 4  # not an empty glob
    for f in files:
        flat = load_config_file(f)
        cfg = build_config(f, base=model_config(build_config(f).model.name))
        validate_config(cfg)
        for key, value in flat.items():
            section, field = key.split(".")
            got = getattr(getattr(cfg, section), field)
            if isinstance(value, dict):  # a mapping adds its entries to the model's own defaults
                assert {k: got[k] for k in value} == value, (f.name, key)
            else:
                assert got == (tuple(value) if isinstance(value, list) else value), (f.name, key, got)


def test_the_top_level_api_works_after_a_bare_import_vaelab():
    """README's `vaelab.train(cfg)`, `vaelab.evaluate(run)`, `vaelab.load`, `vaelab.model_config` need only
    `import vaelab` (in a fresh interpreter: this test process has imported the subpackages already); the
    callable subpackages stay importable as packages."""
    import subprocess
    import sys

    code = (
        "import vaelab; "
        "assert all(callable(f) for f in (vaelab.train, vaelab.evaluate, vaelab.load, vaelab.model_config)); "
        "import vaelab.train.loop, vaelab.evaluate.loglik; "
        "print(*(f'{type(f).__name__} {f.__module__}' for f in (vaelab.train, vaelab.evaluate)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # after the subpackages' import, the names are still the functions, not the packages
    assert out.stdout.split() == ["function", "vaelab.train.loop", "function", "vaelab.evaluate.run"]


def _float_keys() -> list[str]:
    """Every float setting of Config, as a dotted key (from the dataclasses, so a new one is covered)."""
    import typing

    return [
        f"{section}.{name}"
        for section, part in typing.get_type_hints(Config).items()
        for name, tp in typing.get_type_hints(part).items()
        if tp is float
    ]


def test_every_float_setting_is_covered():
    assert {"train.lr", "train.dist_timeout", "model.gaussian_sigma", "data.valid_fraction"} <= set(
        _float_keys()
    )
    assert len(_float_keys()) >= 16


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("key", _float_keys())
def test_every_non_finite_number_is_refused_naming_its_key(key, value):
    """train.lr=inf was accepted (then diverged) while lr=nan was refused: every float is checked up front."""
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)} must be a finite number, got {value}$"):
        check_numbers(Config().replace(**{key: value}))


def test_a_non_finite_number_in_model_extra_is_refused_by_its_key():
    cfg = Config().replace(**{"model.extra": "{pseudo_inputs: 10, temperature: .inf, steps: [1, .nan]}"})
    with pytest.raises(ConfigError, match=r"^model\.extra\.temperature must be a finite number, got inf$"):
        check_numbers(cfg)
    cfg = Config().replace(**{"model.extra": "{steps: [1.5, .nan]}"})
    with pytest.raises(ConfigError, match=r"^model\.extra\.steps\[1\] must be a finite number, got nan$"):
        check_numbers(cfg)


def test_a_config_file_with_an_infinite_rate_is_refused(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: .inf\n")
    with pytest.raises(ConfigError, match=r"^train\.lr must be a finite number, got inf$"):
        check_numbers(build_config(f))


# one bad value per range, and the whole message: the key, its rule and the value, nothing else
BAD = {
    "data.valid_fraction": (1, "must be in [0, 1) (0: no validation split), got 1.0"),
    "data.train_limit": (-5, "must be >= 0 (0: every training image), got -5"),
    "data.labelled": (-1, "must be >= 0 (0: keep every label), got -1"),
    "data.label_seed": (-2, "must be >= -1 (-1: data.split_seed), got -2"),
    "data.labelled_share": (-0.1, "must be in [0, 1), got -0.1"),
    "model.latent_dim": (0, "must be >= 1, got 0"),
    "model.gaussian_sigma": (0, "must be > 0, got 0.0"),
    "model.variance_floor": (-1e-4, "must be >= 0, got -0.0001"),
    "objective.beta": (-0.5, "must be >= 0, got -0.5"),
    "objective.warmup_epochs": (-1, "must be >= 0 (0: no warm-up), got -1.0"),
    "objective.kl_cycle_epochs": (-2, "must be >= 0 (0: no cycles), got -2.0"),
    "objective.kl_cycle_ramp": (1.5, "must be in (0, 1], got 1.5"),
    "objective.free_bits": (-0.1, "must be >= 0, got -0.1"),
    "objective.num_samples": (0, "must be >= 1, got 0"),
    "train.epochs": (-1, "must be >= 0 (0: save the untrained model), got -1"),
    "train.batch_size": (0, "must be >= 1, got 0"),
    "train.lr": (0, "must be > 0, got 0.0"),
    "train.lr_step_epochs": (0, "must be >= 1, got 0"),
    "train.lr_gamma": (0, "must be > 0, got 0.0"),
    "train.weight_decay": (-1e-4, "must be >= 0, got -0.0001"),
    "train.grad_clip": (-1, "must be >= 0 (0: no clipping), got -1.0"),
    "train.grad_clip_value": (-1, "must be >= 0 (0: no clipping), got -1.0"),
    "train.threads": (-1, "must be >= 0 (0: the default), got -1"),
    "train.eval_batch_size": (0, "must be >= 1, got 0"),
    "train.dist_timeout": (0, "must be > 0 seconds, got 0.0"),
    "train.max_restarts": (-1, "must be >= 0, got -1"),
    "train.restart_lr_factor": (1, "must be in (0, 1), got 1.0"),
    "train.ema": (1, "must be in [0, 1) (0: no weight averaging), got 1.0"),
}


def test_every_range_has_a_bad_value_here():
    assert set(BAD) | {"model.hidden", "model.conv_channels"} == set(RANGES)


@pytest.mark.parametrize("key", sorted(BAD))
def test_a_range_error_names_the_one_key_and_its_value(key):
    """They listed every constraint of a group ("need train.epochs >= 0, train.batch_size >= 1, ... and
    train.lr > 0") whichever one broke, without the value."""
    value, rule = BAD[key]
    with pytest.raises(ConfigError, match=f"^{re.escape(f'{key} {rule}')}$"):
        check_numbers(Config().replace(**{key: value}))


def test_a_range_error_names_the_flag_when_one_sets_the_key():
    cfg = Config().replace(**{"train.epochs": -1, "model.hidden": (32, 0)})
    with pytest.raises(ConfigError, match=r"^--hidden: need every model\.hidden size >= 1, got \[32, 0\]$"):
        check_numbers(cfg, {"train.epochs": "--epochs", "model.hidden": "--hidden"})
    with pytest.raises(
        ConfigError, match=r"^--epochs / train\.epochs must be >= 0 \(0: save the untrained model\), got -1$"
    ):
        check_numbers(cfg.replace(**{"model.hidden": (32,)}), {"train.epochs": "--epochs"})
