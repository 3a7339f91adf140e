"""The Frey Face recipe selects the sigmoid Gaussian mean, and `vaelab manifold --range codes` reaches the figure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaelab.config import build_config
from vaelab.errors import ConfigError
from vaelab.models.registry import build_model
from vaelab.train.validate import validate_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_the_frey_face_config_decodes_means_in_the_unit_interval() -> None:
    cfg = build_config(CONFIGS / "kingma2014-freyface.yaml")
    assert cfg.model.gaussian_mean == "sigmoid"
    validate_config(cfg)
    model = build_model(cfg.model, (1, 28, 20))
    mean = model.decode(torch.randn(64, cfg.model.latent_dim) * 30).mean
    assert mean.shape == (64, 1, 28, 20)
    assert bool(((mean > 0) & (mean < 1)).all())


def test_an_unknown_gaussian_mean_is_refused_with_the_choices() -> None:
    cfg = build_config(CONFIGS / "kingma2014-freyface.yaml").replace(**{"model.gaussian_mean": "tanh"})
    with pytest.raises(ConfigError, match=r"unknown .*'tanh'; choose one of: identity, sigmoid"):
        validate_config(cfg)


def test_manifold_takes_the_codes_range(tmp_path) -> None:
    import subprocess
    import sys

    from vaelab_testing import TINY_TRAIN

    tiny_run = tmp_path / "run"
    train = [sys.executable, "-m", "vaelab", "train", *TINY_TRAIN, "--no-figures", "--out", str(tiny_run)]
    subprocess.run(train, capture_output=True, text=True, check=True)

    out = tmp_path / "m.png"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "vaelab",
            "manifold",
            str(tiny_run),
            "--range",
            "codes",
            "--out",
            str(out),
            "-n",
            "4",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 0
    bad = subprocess.run(
        [sys.executable, "-m", "vaelab", "manifold", str(tiny_run), "--range", "data"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "invalid choice: 'data'" in bad.stderr
