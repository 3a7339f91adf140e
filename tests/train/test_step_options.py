"""Options of the training step: torch.compile falls back to eager, bf16 autocast, the deferred finite check."""

from __future__ import annotations

import pytest
import torch

from vaelab.errors import TrainingDiverged
from vaelab.train import loop, train

from vaelab_testing import linear_output_dtypes


def test_compile_that_fails_falls_back_to_the_same_eager_run(config_factory, monkeypatch):
    cfg = config_factory(**{"train.epochs": 2})
    eager = train(cfg)

    def broken(module):
        def call(*args):
            raise RuntimeError("no C++ compiler here")

        return call

    monkeypatch.setattr(loop.torch, "compile", broken)
    with pytest.warns(UserWarning, match=r"torch.compile failed \(RuntimeError\); training eagerly"):
        compiled = train(cfg.replace(**{"train.compile": True}))
    for (k, a), (_, b) in zip(eager.model.state_dict().items(), compiled.model.state_dict().items()):
        assert torch.equal(a, b), k


def test_bf16_autocast_trains_and_evaluates_in_float32(config_factory):
    """Under bf16 the training step's matrix products come out in bfloat16 (fp32's in float32), which moves
    the run off fp32's by rounding only; evaluation (eval mode) and the weights stay float32."""
    cfg = config_factory(**{"train.epochs": 4, "model.hidden": (64,), "model.latent_dim": 4})
    with linear_output_dtypes() as fp32_dtypes:
        fp32 = train(cfg)
    with linear_output_dtypes() as bf16_dtypes:
        bf16 = train(cfg.replace(**{"train.precision": "bf16"}))
    assert fp32_dtypes == {(True, torch.float32), (False, torch.float32)}
    assert bf16_dtypes == {(True, torch.bfloat16), (False, torch.float32)}
    assert bf16.history[-1]["train_elbo"] > bf16.history[0]["train_elbo"] + 3
    # same seed, same data: bf16 rounding of the matrix multiplies moves the result, by far less than a nat here
    for key in ("train_elbo", "test_elbo"):
        assert bf16.history[-1][key] != fp32.history[-1][key]
    assert abs(bf16.history[-1]["test_elbo"] - fp32.history[-1]["test_elbo"]) < 1.0
    assert all(v.dtype == torch.float32 for v in bf16.model.state_dict().values())


def test_deferred_finite_check_names_the_first_bad_step():
    watch = loop.FiniteWatch(torch.device("meta"), lambda: "runs/x/checkpoints/last.pt", every=10)
    assert not watch.on_host
    for step, value in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, float("nan"), float("inf"), 8.0], start=1):
        watch.add(torch.tensor(value), 3, step)
    with pytest.raises(
        TrainingDiverged, match=r"loss became nan at epoch 3, step 6; .* runs/x/checkpoints/last\.pt"
    ):
        watch.flush()


def test_deferred_finite_check_stops_at_the_batch_it_fills(tmp_path):
    watch = loop.FiniteWatch(torch.device("meta"), lambda: "none written yet", every=3)
    watch.add(torch.tensor(1.0), 1, 1)
    watch.add(torch.tensor(float("-inf")), 1, 2)
    with pytest.raises(TrainingDiverged, match=r"loss became -inf at epoch 1, step 2"):
        watch.add(torch.tensor(1.0), 1, 3)
