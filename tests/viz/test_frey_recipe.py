"""The Frey Face recipe selects the sigmoid Gaussian mean, and `vaelab manifold --range codes` decodes the grid
over the test codes' own spread."""

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


def test_manifold_takes_the_codes_range(tmp_path, monkeypatch, capsys) -> None:
    """`vaelab manifold --range codes` decodes the grid about the test codes' mean, at Gaussian quantiles times
    their standard deviation (not the prior's unit grid), along --dims in the order given; an unknown range is
    refused as bad usage."""
    from vaelab.cli import main
    from vaelab.commands.common import open_run
    from vaelab.viz import figures as fig

    from vaelab_testing import TINY_TRAIN, capture_decoded, manifold_grid

    run = tmp_path / "run"
    assert main(["train", *TINY_TRAIN, "--no-figures", "--out", str(run)]) == 0
    o = open_run(str(run))
    codes = fig.codes(o.model, o.split("test"), limit=5000).double()
    n = 4
    expected = manifold_grid(n, codes.mean(0), (0, 1), codes.std(0))
    prior = manifold_grid(n, torch.zeros(2), (0, 1), (1.0, 1.0))
    assert (expected - prior).abs().max() > 0.1  # the codes do not sit on the prior: the two grids differ

    decoded = capture_decoded(monkeypatch)
    out = tmp_path / "m.png"
    assert main(["manifold", str(run), "--range", "codes", "--out", str(out), "-n", str(n)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and out.stat().st_size > 0
    torch.testing.assert_close(decoded[0].double().reshape(n, n, 2), expected, rtol=0, atol=1e-5)
    # --dims 1,0: z[1] along a row and z[0] down a column, each at its own codes' spread
    decoded.clear()
    assert (
        main(["manifold", str(run), "--range", "codes", "--dims", "1,0", "--out", str(out), "-n", str(n)])
        == 0
    )
    turned = manifold_grid(n, codes.mean(0), (1, 0), codes.std(0)[[1, 0]])
    torch.testing.assert_close(decoded[0].double().reshape(n, n, 2), turned, rtol=0, atol=1e-5)

    with pytest.raises(SystemExit) as bad:
        main(["manifold", str(run), "--range", "data"])
    assert bad.value.code == 2 and "invalid choice: 'data'" in capsys.readouterr().err
