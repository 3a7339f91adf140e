"""benchmarks/bf16_gradients.py: the per-network comparison is exact arithmetic, a model run wholly in float32
under autocast gives fp32's gradients exactly, and bad names are one-line exits."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bf16_gradients as bg
from vaelab.models.registry import model_config
from vaelab.train import train


def test_compare_groups_parameters_by_network_and_measures_error_and_cosine():
    ref = {
        "q.0.weight": torch.tensor([3.0, 0.0]),
        "q.1.bias": torch.tensor([4.0]),
        "p.w": torch.tensor([1.0, 1.0]),
    }
    other = {
        "q.0.weight": torch.tensor([-3.0, 0.0]),
        "q.1.bias": torch.tensor([-4.0]),
        "p.w": torch.tensor([1.0, 2.0]),
    }
    res = bg.compare(ref, other)
    assert set(res) == {"q", "p"}
    assert res["q"] == pytest.approx((2.0, -1.0))  # |-g - g| / |g| = 2, pointing the other way
    assert res["p"] == pytest.approx((1 / 2**0.5, 3 / (2**0.5 * 5**0.5)))


@pytest.fixture(scope="module")
def adgm_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adgm")
    cfg = model_config("adgm").replace(
        **{
            "data.name": "digits",
            "data.labelled": 50,
            "model.hidden": (16, 16),
            "model.latent_dim": 2,
            "model.extra": {"aux_dim": 3},
            "train.epochs": 1,
            "train.batch_size": 64,
            "train.progress": False,
            "train.threads": 1,
        }
    )
    train(cfg, out=out)
    return out


def test_every_network_in_float32_gives_fp32s_gradients_exactly(adgm_run):
    """With each top-level network outside autocast, the "bf16" step is fp32 arithmetic: zero error, cosine 1;
    the other draws' gradients differ (the Monte Carlo noise is not zero)."""
    nets = ["q_a", "q_y", "q_z", "p_a", "decoder"]
    res = bg.run(
        bg.parse([str(adgm_run), "--which", "last", "--batches", "2", *(f"--float32={n}" for n in nets)])
    )
    assert set(res["networks"]) == set(nets)
    for s in res["networks"].values():
        assert s["bf16_rel"] == 0.0 and s["bf16_cos"] == pytest.approx(1.0) and s["noise_rel"] > 0.01


def test_the_classifier_logits_alone_in_bf16_change_its_gradient(adgm_run):
    """Everything in float32 but the ADGM's logits layer, run in bf16 by --bf16: the classifier's gradient
    differs from fp32's, so the flag reaches that layer."""
    rest = ["q_a", "q_z", "p_a", "decoder", "q_y.inputs.0", "q_y.inputs.1", "q_y.rest.0"]
    res = bg.run(
        bg.parse([str(adgm_run), "--which", "last", "--bf16=q_y.rest.2", *(f"--float32={n}" for n in rest)])
    )
    assert res["networks"]["q_y"]["bf16_rel"] > 1e-4 and res["bf16"] == ["q_y.rest.2"]


def test_main_prints_every_network_and_writes_the_json(adgm_run, tmp_path, capsys):
    """The printed table and --json hold the same networks; --data-dir points the run at another data folder
    (here the same built-in data set, so the numbers are those of the run's own)."""
    out = tmp_path / "res.json"
    assert bg.main([str(adgm_run), "--which", "last", "--data-dir", str(tmp_path), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    printed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert printed == list(res["networks"]) == ["q_a", "q_y", "q_z", "p_a", "decoder"]
    again = bg.run(bg.parse([str(adgm_run), "--which", "last"]))
    assert again["networks"] == res["networks"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--float32=nope"], "--float32 nope: no such submodule; the model has: q_a, q_y"),
        (["--float32=q_y.rest.7"], "--float32 q_y.rest.7: no such submodule; q_y.rest has: 0, 1, 2"),
        (["--bf16=q_a"], "--bf16 q_a: a Sequential, not a Float32Linear"),
        (["--float32=q_y", "--bf16=q_y.rest.2"], "--bf16 q_y.rest.2 lies in --float32 q_y"),
    ],
)
def test_bad_names_are_one_line_exits(adgm_run, flags, message):
    with pytest.raises(SystemExit) as e:
        bg.run(bg.parse([str(adgm_run), *flags]))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_folder_without_a_run_or_a_checkpoint_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="not a run folder"):
        bg.main([str(tmp_path)])
    (tmp_path / "config.json").write_text(json.dumps({}))
    with pytest.raises(SystemExit) as e:
        bg.main([str(tmp_path)])
    assert str(e.value).startswith("bf16_gradients: ") and "\n" not in str(e.value)


def test_batches_below_one_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bg.parse([str(tmp_path), "--batches", "0"])
    assert "--batches must be >= 1, got 0" in capsys.readouterr().err.splitlines()[-1]
