"""Weight averaging (`--ema DECAY`): the average equals its closed form d^k theta_0 + sum (1 - d) d^(k-i) theta_i
over the recorded weights (fp32, bf16, compiled), each epoch's validation and test numbers are the average's,
checkpoints ship it and resume it to the same bits (one process and two DDP ranks), --ema 0 trains as before,
and bad values are one line."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from vaelab.cli import main
from vaelab.data import load_data, prepare
from vaelab.models.registry import objective_name
from vaelab.objectives import OBJECTIVES
from vaelab.train import distributed, load, loop, read_checkpoint, train
from vaelab.train.ema import WeightAverage

from vaelab_testing import TINY_TRAIN, linear_output_dtypes

DECAY = 0.95  # ~46 steps in 2 epochs of the 8x8 digits: theta_0 keeps weight 0.95^46 = 0.09 of the average


class Tiny(nn.Module):
    """A float64 linear map with a float buffer that moves (a running mean) and an integer counter."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2).double()
        self.register_buffer("running", torch.zeros(2, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(0))


def _closed_form(thetas: list[torch.Tensor], d: float) -> torch.Tensor:
    """d^k theta_0 + sum_{i=1..k} (1 - d) d^(k-i) theta_i, summed by hand in float64."""
    k = len(thetas) - 1
    out = d**k * thetas[0].double()
    for i in range(1, k + 1):
        out = out + (1 - d) * d ** (k - i) * thetas[i].double()
    return out


def test_the_average_after_k_steps_is_its_closed_form_and_torchs_ema_step_bit_for_bit():
    torch.manual_seed(0)
    model = Tiny()
    avg = WeightAverage(model, 0.8)
    torch_avg = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.8), use_buffers=True)
    torch_avg.update_parameters(model)  # its first update copies: the average starts at theta_0 too
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    seen = {k: [v.detach().clone()] for k, v in model.state_dict().items()}
    for _ in range(12):
        opt.zero_grad()
        (model.lin(torch.randn(5, 3, dtype=torch.float64)) ** 2).sum().backward()
        opt.step()
        with torch.no_grad():
            model.running.add_(torch.randn(2, dtype=torch.float64))
            model.count += 1
        avg.update()
        torch_avg.update_parameters(model)
        for k, v in model.state_dict().items():
            seen[k].append(v.detach().clone())
    assert avg.steps == 12
    got = avg.module.state_dict()
    for k in ("lin.weight", "lin.bias", "running"):
        torch.testing.assert_close(got[k], _closed_form(seen[k], 0.8), rtol=1e-13, atol=1e-13)
        assert (got[k] - seen[k][-1]).abs().max() > 0.01  # the average is not the last weights
        assert torch.equal(got[k], torch_avg.module.state_dict()[k]), k  # the same _foreach_lerp_
    assert int(got["count"]) == 12  # copied; AveragedModel averages it in float32 and truncates: it lags
    assert int(torch_avg.module.count) == 8
    assert not any(p.requires_grad for p in avg.module.parameters())


def _recording(seen: list[list[torch.Tensor]]):
    """A make_optimizer that records every parameter at the start and after each optimiser step."""
    make = loop.make_optimizer

    def recording(cfg, params):
        opt = make(cfg, params)
        ps = [p for g in opt.param_groups for p in g["params"]]
        seen.append([p.detach().clone() for p in ps])
        opt.register_step_post_hook(lambda *_: seen.append([p.detach().clone() for p in ps]))
        return opt

    return recording


@pytest.mark.parametrize(
    "option",
    [{}, {"train.precision": "bf16"}, pytest.param({"train.compile": True}, marks=pytest.mark.slow)],
    ids=["fp32", "bf16", "compiled"],
)
def test_the_trained_average_is_the_closed_form_of_the_recorded_weights(config_factory, monkeypatch, option):
    """In the loop: under bf16 autocast (the step's products in bfloat16, evaluation's in float32) the average
    stays float32; compiled, it follows the weights the compiled step updates."""
    seen: list[list[torch.Tensor]] = []
    monkeypatch.setattr(loop, "make_optimizer", _recording(seen))
    compiled = option.get("train.compile", False)  # no hooks on the compiled path: it is checked for itself
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.nullcontext(None) if compiled else linear_output_dtypes() as dtypes,
    ):
        warnings.simplefilter("always")
        res = train(config_factory(**{"train.ema": DECAY, **option}))
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]  # compiled, not eager
    if not compiled:
        step = torch.bfloat16 if option.get("train.precision") == "bf16" else torch.float32
        assert dtypes == {(True, step), (False, torch.float32)}
    raw = res.extra["raw_model"]
    names = [n for n, _ in raw.named_parameters()]
    assert res.history[-1]["step"] == len(seen) - 1 > 40
    got = res.model.state_dict()
    for j, name in enumerate(names):
        thetas = [s[j] for s in seen]
        assert got[name].dtype == torch.float32
        assert torch.equal(thetas[-1], raw.state_dict()[name])
        expected = _closed_form(thetas, DECAY)
        torch.testing.assert_close(got[name].double(), expected, rtol=1e-5, atol=1e-6, msg=name)
        # theta_0's term is seen: dropping it misses by far more than the tolerance
        assert (expected - DECAY ** (len(thetas) - 1) * thetas[0].double() - got[name]).abs().max() > 1e-3


def _elbo_of(model: nn.Module, cfg, split) -> float:
    """The mean ELBO of `model` on a whole split, in one batch with the per-epoch evaluation's noise seed."""
    with torch.inference_mode():
        step = OBJECTIVES[objective_name(cfg)](
            model.eval(),
            split.batch(slice(0, len(split))),
            cfg.objective,
            1.0,
            torch.Generator().manual_seed(cfg.train.eval_seed),
        )
    return float(step.stats["elbo"].double().sum()) / len(split)


def test_validation_and_test_score_the_average_and_the_run_ships_it(tmp_path, config_factory):
    """The recorded valid and test ELBO are those of the averaged weights (not the raw ones); last.pt and
    best.pt hold the average as "model", so vaelab.load (and eval, figures, serve, export through it) uses it."""
    cfg = config_factory(**{"train.ema": DECAY, "train.epochs": 3})
    res = train(cfg, out=tmp_path / "run")
    data = load_data(cfg.data)
    assert len(data.valid) <= cfg.train.eval_batch_size and len(data.test) <= cfg.train.eval_batch_size
    valid = prepare(data.valid, cfg.data.binarize, "cpu", cfg.data.binarize_seed + 2, train=False)
    test = prepare(data.test, cfg.data.binarize, "cpu", cfg.data.binarize_seed + 1, train=False)
    last = load(tmp_path / "run", which="last")
    for k, v in res.model.state_dict().items():
        assert torch.equal(last.state_dict()[k], v), k
    for split, name in ((valid, "valid"), (test, "test")):
        assert _elbo_of(last, cfg, split) == pytest.approx(res.history[-1][f"{name}_elbo"], rel=1e-12)
        assert abs(_elbo_of(res.extra["raw_model"], cfg, split) - res.history[-1][f"{name}_elbo"]) > 0.05
    ck = read_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert ck["ema"]["decay"] == DECAY and ck["ema"]["steps"] == res.history[-1]["step"]
    for k, v in res.extra["raw_model"].state_dict().items():
        assert torch.equal(ck["ema"]["raw"][k], v), k
    best = read_checkpoint(tmp_path / "run/checkpoints/best.pt")
    at = max(range(3), key=lambda i: res.history[i]["valid_elbo"])
    assert best["epoch"] == at + 1 and best["best"] == res.history[at]["valid_elbo"]
    assert _elbo_of(load(tmp_path / "run"), cfg, valid) == pytest.approx(best["best"], rel=1e-12)


def _states(res) -> dict[str, dict[str, torch.Tensor]]:
    return {
        "average": {k: v.detach().clone() for k, v in res.model.state_dict().items()},
        "raw": {k: v.detach().clone() for k, v in res.extra["raw_model"].state_dict().items()},
    }


def _assert_same(a: dict, b: dict) -> None:
    for which in ("average", "raw"):
        assert a[which].keys() == b[which].keys()
        for k in a[which]:
            assert torch.equal(a[which][k], b[which][k]), (which, k)


def test_a_stopped_and_resumed_run_ends_bit_for_bit_where_the_whole_run_ends(tmp_path, config_factory):
    """4 epochs straight; 2 then resumed; stopped by on_epoch after epoch 1 then resumed: the same raw and
    averaged weights, the same numbers, and checkpoints that agree."""
    cfg = config_factory(**{"train.ema": DECAY, "train.epochs": 4, "data.binarize": "dynamic"})
    whole = train(cfg, out=tmp_path / "whole")
    train(cfg.replace(**{"train.epochs": 2}), out=tmp_path / "parts")
    resumed = train(cfg, out=tmp_path / "parts", resume=True, explicit={"train.epochs"})
    train(cfg, out=tmp_path / "stopped", on_epoch=lambda r: r["epoch"] == 1)
    again = train(cfg, out=tmp_path / "stopped", resume=True)
    for other in (resumed, again):
        _assert_same(_states(whole), _states(other))
        assert [r["valid_elbo"] for r in other.history] == [r["valid_elbo"] for r in whole.history]
    a, b = (read_checkpoint(tmp_path / f"{r}/checkpoints/last.pt") for r in ("whole", "parts"))
    assert a["ema"]["steps"] == b["ema"]["steps"] == whole.history[-1]["step"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_ema_0_trains_as_before_and_the_average_leaves_the_training_alone(tmp_path, config_factory):
    """--ema 0 writes the checkpoint it wrote before (no "ema", "model" the trained weights); with --ema the
    trained weights and the train_* numbers are bit for bit those of the run without it."""
    cfg = config_factory(**{"train.epochs": 2, "data.binarize": "dynamic"})
    plain = train(cfg, out=tmp_path / "plain")
    averaged = train(cfg.replace(**{"train.ema": DECAY}), out=tmp_path / "ema")
    assert plain.extra == {}
    for k, v in plain.model.state_dict().items():
        assert torch.equal(averaged.extra["raw_model"].state_dict()[k], v), k
    for a, b in zip(plain.history, averaged.history):
        assert {k: v for k, v in a.items() if k.startswith("train_")} == {
            k: v for k, v in b.items() if k.startswith("train_")
        }
        assert a["valid_elbo"] != b["valid_elbo"]
    ck = read_checkpoint(tmp_path / "plain/checkpoints/last.pt")
    assert set(ck) == {
        "model", "optimizer", "scheduler", "config", "shape", "epoch", "step", "rng", "history", "best",
        "lr_factor",
    }  # fmt: skip
    assert all(torch.equal(ck["model"][k], v) for k, v in plain.model.state_dict().items())


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("1", "--ema / train.ema must be in [0, 1) (0: no weight averaging), got 1.0"),
        ("-0.5", "--ema / train.ema must be in [0, 1) (0: no weight averaging), got -0.5"),
        ("nan", "--ema / train.ema must be a finite number, got nan"),
    ],
)
def test_bad_ema_values_are_one_line(tmp_path, capsys, one_line_error, value, needle):
    code = main(["train", *TINY_TRAIN, "--ema", value, "--out", str(tmp_path / "r")])
    one_line_error(capsys, code, needle)
    assert not (tmp_path / "r").exists()


def test_a_gan_with_ema_is_refused_in_one_line(tmp_path, capsys, one_line_error):
    code = main(["train", *TINY_TRAIN, "--model", "gan", "--ema", "0.9", "--out", str(tmp_path / "r")])
    one_line_error(capsys, code, "--ema / train.ema: model 'gan' trains its own parameter groups")


def test_a_resume_may_not_change_the_decay(tmp_path, config_factory):
    cfg = config_factory(**{"train.ema": DECAY, "train.epochs": 1})
    train(cfg, out=tmp_path / "r")
    with pytest.raises(Exception, match=r"train\.ema differs \(0\.95 saved, 0\.5 asked\)"):
        train(cfg.replace(**{"train.ema": 0.5}), out=tmp_path / "r", resume=True, explicit={"train.ema"})


def _ranks_with_ema(cfg, folder: str) -> dict:
    """In each rank: an uninterrupted averaged run, and one stopped after epoch 1 and resumed."""
    distributed.start(torch.device("cpu"), 60)
    try:
        whole = train(cfg, out=f"{folder}/whole")
        train(cfg.replace(**{"train.epochs": 1}), out=f"{folder}/parts")
        resumed = train(cfg, out=f"{folder}/parts", resume=True, explicit={"train.epochs"})
    finally:
        distributed.stop()
    return {"whole": _states(whole), "resumed": _states(resumed), "history": whole.history}


@pytest.mark.slow
def test_two_ranks_keep_one_average_close_to_one_process_and_resume_it_exactly(tmp_path, config_factory):
    cfg = config_factory(
        **{"train.ema": DECAY, "train.epochs": 2, "data.train_limit": 640, "model.hidden": (64,)}
    )
    one = train(cfg)
    results = distributed.launch(2, _ranks_with_ema, (cfg, str(tmp_path)), threads=1)
    _assert_same(results[0]["whole"], results[1]["whole"])  # the same average on every rank, bit for bit
    for res in results.values():
        _assert_same(res["whole"], res["resumed"])
        for k, v in one.model.state_dict().items():
            torch.testing.assert_close(res["whole"]["average"][k], v, rtol=1e-4, atol=1e-5)
        assert res["history"][-1]["valid_elbo"] == pytest.approx(one.history[-1]["valid_elbo"], rel=1e-5)
    ck = read_checkpoint(tmp_path / "whole/checkpoints/last.pt")  # rank 0 wrote it
    for k, v in results[0]["whole"]["average"].items():
        assert torch.equal(ck["model"][k], v), k
