"""benchmarks/bf16_gradients.py: the per-network comparison is exact arithmetic, a model run wholly in float32
under autocast gives fp32's gradients exactly, and bad names are one-line exits."""

from __future__ import annotations

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


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--float32=nope", "--float32 nope: no such submodule; top-level ones: q_a, q_y"),
        ("--bf16=q_a", "--bf16 q_a: a Sequential, not a Float32Linear"),
    ],
)
def test_bad_names_are_one_line_exits(adgm_run, flag, message):
    with pytest.raises(SystemExit) as e:
        bg.run(bg.parse([str(adgm_run), flag]))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_folder_without_a_run_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit, match="not a run folder"):
        bg.run(bg.parse([str(tmp_path)]))
    with pytest.raises(SystemExit):
        bg.parse([str(tmp_path), "--batches", "0"])
    assert "--batches must be >= 1, got 0" in capsys.readouterr().err.splitlines()[-1]
