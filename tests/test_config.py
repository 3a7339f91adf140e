"""Configs: defaults, files, key=value overrides with types, and clear errors."""

from __future__ import annotations

import json

import pytest

from vaelab.config import Config, build_config, parse_assignments
from vaelab.errors import ConfigError


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


def test_assignments():
    assert parse_assignments(["a.b=1", "c.d = x=y"]) == {"a.b": "1", "c.d": "x=y"}
    with pytest.raises(ConfigError, match="--set expects key=value"):
        parse_assignments(["novalue"])


def test_shipped_configs_load():
    from pathlib import Path

    files = sorted(Path(__file__).resolve().parent.parent.joinpath("configs").glob("*.yaml"))
    assert len(files) >= 4
    for f in files:
        build_config(f)


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
        "print(vaelab.evaluate.__doc__.split(chr(10))[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
