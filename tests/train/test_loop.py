"""Training: the loss falls, resume is exact, a non-finite loss stops with its epoch and step."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from vaelab.data import load_data
from vaelab.errors import ConfigError, DataError, TrainingDiverged
from vaelab.objectives import elbo as elbo_module
from vaelab.runs import RunDir
from vaelab.train import loop as loop_module
from vaelab.train import read_checkpoint, train


def test_loss_falls_on_tiny_data(config_factory):
    res = train(config_factory(**{"train.epochs": 6, "model.hidden": (64,), "model.latent_dim": 4}))
    first, last = res.history[0], res.history[-1]
    assert last["train_elbo"] > first["train_elbo"] + 5
    assert last["test_elbo"] > first["test_elbo"] + 5
    assert all(r["test_elbo"] <= 0 for r in res.history)  # a Bernoulli log-likelihood of binary data


def test_run_folder_contents(tmp_path, config_factory):
    cfg = config_factory(**{"data.valid_fraction": 0.2})
    train(cfg, out=tmp_path / "run")
    run = RunDir(tmp_path / "run")
    assert json.loads(run.config.read_text()) == cfg.to_dict()
    rows = run.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_elbo", "train_rec", "train_kl", "valid_elbo", "test_elbo", "seconds"} <= set(rows[0])
    for key in ("train", "valid", "test"):
        assert rows[0][f"{key}_elbo"] == pytest.approx(rows[0][f"{key}_rec"] - rows[0][f"{key}_kl"], rel=1e-5)
    ck = read_checkpoint(run.last)
    assert ck["epoch"] == 2 and ck["config"] == cfg.to_dict()
    best = read_checkpoint(run.best)
    assert best["best"] == max(r["valid_elbo"] for r in rows)
    assert not list(run.root.rglob("*.tmp"))


def test_resume_is_bit_exact(tmp_path, config_factory):
    cfg = config_factory(**{"train.epochs": 3, "data.binarize": "dynamic"})
    whole = train(cfg, out=tmp_path / "whole")
    train(cfg.replace(**{"train.epochs": 1}), out=tmp_path / "parts")
    resumed = train(cfg, out=tmp_path / "parts", resume=True, explicit={"train.epochs"})
    for (k, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    assert whole.history[-1]["test_elbo"] == resumed.history[-1]["test_elbo"]
    a, b = (
        read_checkpoint(tmp_path / "whole/checkpoints/last.pt"),
        read_checkpoint(tmp_path / "parts/checkpoints/last.pt"),
    )
    assert torch.equal(a["rng"]["perm"], b["rng"]["perm"]) and torch.equal(
        a["rng"]["noise"], b["rng"]["noise"]
    )
    assert [r["epoch"] for r in RunDir(tmp_path / "parts").read_metrics()] == [1, 2, 3]


def test_on_epoch_returning_true_stops_after_that_epoch_and_the_run_resumes_exactly(tmp_path, config_factory):
    """A budget stop: on_epoch says True after epoch 2 of 4; the folder holds 2 epochs, and resuming it ends
    bit-for-bit where the uninterrupted run ends. Any other return value (None, 1, "yes") does not stop."""
    cfg = config_factory(**{"train.epochs": 4, "data.binarize": "dynamic"})
    whole = train(cfg, out=tmp_path / "whole", on_epoch=lambda r: 1 if r["epoch"] == 1 else "yes")
    assert len(whole.history) == 4
    stopped = train(cfg, out=tmp_path / "parts", on_epoch=lambda r: r["epoch"] == 2)
    assert [r["epoch"] for r in stopped.history] == [1, 2]
    assert read_checkpoint(tmp_path / "parts/checkpoints/last.pt")["epoch"] == 2
    assert [r["epoch"] for r in RunDir(tmp_path / "parts").read_metrics()] == [1, 2]
    resumed = train(cfg, out=tmp_path / "parts", resume=True)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    for (k, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k


def test_on_epoch_sees_each_new_epoch_after_its_checkpoint(tmp_path, config_factory):
    cfg = config_factory(**{"train.epochs": 3})
    train(cfg.replace(**{"train.epochs": 1}), out=tmp_path / "run")
    seen = []

    def on_epoch(record):
        seen.append(record)
        assert read_checkpoint(tmp_path / "run/checkpoints/last.pt")["epoch"] == record["epoch"]
        record["epoch"] = -1  # the callback gets a copy: the run's history is not changed through it

    res = train(cfg, out=tmp_path / "run", resume=True, explicit={"train.epochs"}, on_epoch=on_epoch)
    assert [r["epoch"] for r in seen] == [-1, -1]
    assert [r["epoch"] for r in res.history] == [1, 2, 3]
    assert [r["test_elbo"] for r in seen] == [r["test_elbo"] for r in res.history[1:]]


def test_resume_refuses_a_changed_config(tmp_path, config_factory):
    cfg = config_factory(**{"train.epochs": 1})
    train(cfg, out=tmp_path / "r")
    with pytest.raises(ConfigError, match="train.lr differs"):
        train(cfg.replace(**{"train.lr": 0.5}), out=tmp_path / "r", resume=True, explicit={"train.lr"})


def test_resume_without_checkpoint(tmp_path, config_factory):
    with pytest.raises(ConfigError, match="--resume: no checkpoint at"):
        train(config_factory(), out=tmp_path / "empty", resume=True)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, config_factory, monkeypatch):
    calls = {"n": 0}
    original = elbo_module.OBJECTIVES["elbo"]

    def poisoned(model, x, cfg, beta, gen):
        calls["n"] += 1
        step = original(model, x, cfg, beta, gen)
        if calls["n"] == 30:  # epoch 1 is 24 batches and 1 test batch, so this is epoch 2, batch 5
            return step._replace(loss=step.loss * float("nan"))
        return step

    monkeypatch.setitem(elbo_module.OBJECTIVES, "elbo", poisoned)
    cfg = config_factory(**{"train.epochs": 3, "data.valid_fraction": 0.0})
    with pytest.raises(
        TrainingDiverged, match=r"loss became nan at epoch 2, step 5.*last good checkpoint: .*last\.pt"
    ):
        train(cfg, out=tmp_path / "r")
    ck = read_checkpoint(tmp_path / "r/checkpoints/last.pt")
    assert ck["epoch"] == 1 and all(torch.isfinite(v).all() for v in ck["model"].values())


def test_bernoulli_on_grey_levels_is_refused(config_factory):
    with pytest.raises(ConfigError, match="likelihood 'bernoulli' needs binary pixels"):
        train(config_factory(**{"data.binarize": "none"}))


def test_autoencoder_trains_on_reconstruction(config_factory):
    res = train(config_factory(**{"model.name": "autoencoder", "train.epochs": 4}))
    assert "train_elbo" not in res.history[0]
    assert res.history[-1]["train_rec"] > res.history[0]["train_rec"]


def test_other_likelihoods_train(config_factory):
    for lik in ("continuous-bernoulli", "gaussian", "discretized-logistic"):
        res = train(config_factory(**{"model.likelihood": lik, "data.binarize": "none", "train.epochs": 3}))
        assert res.history[-1]["train_elbo"] > res.history[0]["train_elbo"], lik


def test_iwae_schedule_stages():
    from vaelab.train.loop import iwae_lr_factor

    factors = [iwae_lr_factor(e) for e in range(3280)]
    assert factors[0] == 1.0 and factors[1] == pytest.approx(10 ** (-1 / 7))
    assert factors[3] == factors[1] and factors[4] == pytest.approx(10 ** (-2 / 7))
    assert len(set(factors)) == 8 and factors[-1] == pytest.approx(0.1)
    assert sum(f == factors[-1] for f in factors) == 3**7


def test_a_trained_run_is_not_overwritten_by_accident(tmp_path, config_factory):
    cfg = config_factory(**{"train.epochs": 1})
    train(cfg, out=tmp_path / "r")
    before = (tmp_path / "r/checkpoints/last.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a trained run .*--resume.*--overwrite"):
        train(cfg, out=tmp_path / "r")
    assert (tmp_path / "r/checkpoints/last.pt").read_bytes() == before
    old = [tmp_path / "r/eval.json", tmp_path / "r/report.html", tmp_path / "r/figures/manifold.png"]
    old[2].parent.mkdir()
    for f in old:
        f.write_text("of the old model")
    train(cfg.replace(**{"train.seed": 5, "model.latent_dim": 3}), out=tmp_path / "r", overwrite=True)
    assert (tmp_path / "r/checkpoints/last.pt").read_bytes() != before
    assert not any(f.exists() for f in old)  # nothing of the old model beside the new one
    assert read_checkpoint(tmp_path / "r/checkpoints/best.pt")["config"]["model"]["latent_dim"] == 3


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path, config_factory):
    cfg = config_factory(**{"train.epochs": 1})
    train(cfg, out=tmp_path / "r")
    stale = [tmp_path / "r/checkpoints/.last.pt.abc123.tmp", tmp_path / "r/.metrics.jsonl.x.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    train(cfg.replace(**{"train.epochs": 2}), out=tmp_path / "r", resume=True, explicit={"train.epochs"})
    assert not any(p.exists() for p in stale)


def test_divergence_can_restart_from_the_last_checkpoint_with_a_lower_rate(
    tmp_path, config_factory, monkeypatch, capsys
):
    calls = {"n": 0}
    original = elbo_module.OBJECTIVES["elbo"]

    def poisoned(model, x, cfg, beta, gen, **kw):
        calls["n"] += 1
        step = original(model, x, cfg, beta, gen, **kw)
        return step._replace(loss=step.loss * float("nan")) if calls["n"] == 30 else step

    monkeypatch.setitem(elbo_module.OBJECTIVES, "elbo", poisoned)
    cfg = config_factory(**{"train.epochs": 3, "data.valid_fraction": 0.0, "train.on_diverge": "restart"})
    res = train(cfg, out=tmp_path / "r")
    assert [r["epoch"] for r in res.history] == [1, 2, 3]
    assert res.history[0]["lr"] == pytest.approx(1e-3) and res.history[-1]["lr"] == pytest.approx(5e-4)
    err = capsys.readouterr().err
    assert "loss became nan at epoch 2, step 5" in err and "restart 1 of 3 from epoch 1" in err
    assert all(torch.isfinite(v).all() for v in res.model.state_dict().values())


def test_each_restart_halves_the_rate_once(config_factory, tmp_path, monkeypatch):
    """Diverged in epoch 2 (back to epoch 1's checkpoint, x0.5) and again in epoch 4 (back to epoch 3's,
    whose rate is already halved): 1e-3, 5e-4, 5e-4, 2.5e-4 (the second restart compounded to 1.25e-4),
    and a plain resume afterwards keeps the rate it had."""
    from vaelab.train.loop import FiniteWatch

    original, fired = FiniteWatch.add, set()

    def diverging(self, loss, epoch, step):
        if (epoch, step) in {(2, 2), (4, 2)} and (epoch, step) not in fired:
            fired.add((epoch, step))
            self._stop(float("nan"), epoch, step)
        return original(self, loss, epoch, step)

    monkeypatch.setattr(FiniteWatch, "add", diverging)
    cfg = config_factory(**{"train.epochs": 4, "train.on_diverge": "restart", "train.max_restarts": 3})
    res = train(cfg, out=tmp_path / "r")
    assert [r["lr"] for r in res.history] == pytest.approx([1e-3, 5e-4, 5e-4, 2.5e-4])
    more = train(
        cfg.replace(**{"train.epochs": 5}), out=tmp_path / "r", resume=True, explicit={"train.epochs"}
    )
    assert more.history[-1]["lr"] == pytest.approx(2.5e-4)


def test_restarts_are_bounded(config_factory, monkeypatch):
    original = elbo_module.OBJECTIVES["elbo"]

    def always_nan(model, x, cfg, beta, gen, **kw):
        step = original(model, x, cfg, beta, gen, **kw)
        return step._replace(loss=step.loss * float("nan"))

    monkeypatch.setitem(elbo_module.OBJECTIVES, "elbo", always_nan)
    cfg = config_factory(**{"train.on_diverge": "restart", "train.max_restarts": 2})
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1, step 1"):
        train(cfg)


@pytest.mark.parametrize(
    ("log", "failure"),
    [("", TrainingDiverged), ("tensorboard", TrainingDiverged), ("", KeyboardInterrupt)],
)
def test_a_start_that_fails_before_its_first_checkpoint_leaves_nothing(
    tmp_path, config_factory, monkeypatch, log, failure
):
    """It left config.json, an empty metrics.jsonl and checkpoints/ (and TensorBoard's tb/): a shell of a run.
    Only the run's own files go: what the folder held, or another writer put there meanwhile, stays."""
    original, calls, mine = elbo_module.OBJECTIVES["elbo"], {"n": 0}, tmp_path / "mine"

    def fail_at_step_3(model, x, cfg, beta, gen, **kw):
        calls["n"] += 1
        step = original(model, x, cfg, beta, gen, **kw)
        if calls["n"] < 3:
            return step
        if mine.is_dir():
            (mine / "other-job.log").write_text("not vaelab's")
        if failure is KeyboardInterrupt:
            raise KeyboardInterrupt
        return step._replace(loss=step.loss * float("nan"))

    monkeypatch.setitem(elbo_module.OBJECTIVES, "elbo", fail_at_step_3)
    if log:
        pytest.importorskip("torch.utils.tensorboard")
    cfg = config_factory(**{"train.log": (log,) if log else ()})
    with pytest.raises(failure):
        train(cfg, out=tmp_path / "new" / "r")
    assert not (tmp_path / "new").exists()  # the folders the lock made go too

    mine.mkdir()
    (mine / "notes.txt").write_text("kept")
    (mine / "config.json").write_text("{}")  # the user's, in a folder without a run: it stays
    calls["n"] = 0
    with pytest.raises(failure):
        train(cfg, out=mine)
    assert sorted(p.name for p in mine.iterdir()) == ["config.json", "notes.txt", "other-job.log"]
    assert (mine / "notes.txt").read_text() == "kept"

    # --overwrite of a trained run cleared it and wrote a new config.json and metrics.jsonl: these go too (they
    # stayed, a shell of the new run)
    old_run, calls["n"] = tmp_path / "old", -(10**6)  # this one trains whole
    train(cfg.replace(**{"train.log": ()}), out=old_run)
    (old_run / "notes.txt").write_text("kept")
    calls["n"], mine = 0, old_run
    with pytest.raises(failure):
        train(cfg, out=old_run, overwrite=True)
    assert sorted(p.name for p in old_run.iterdir()) == ["notes.txt", "other-job.log"]


@pytest.mark.parametrize("log", ["", "tensorboard"])
def test_a_failed_overwrite_leaves_neither_the_old_run_nor_a_shell_of_the_new(
    log, tmp_path, config_factory, monkeypatch
):
    """--overwrite cleared the old run, then Ctrl-C came between the first epoch's best.pt and last.pt: what the
    start wrote goes, checkpoints/best.pt and (both runs logging to TensorBoard) the tb/ it made anew included."""
    if log:
        pytest.importorskip("torch.utils.tensorboard")
    cfg = config_factory(**{"train.log": (log,) if log else ()})
    run = tmp_path / "r"
    train(cfg, out=run)
    (run / "notes.txt").write_text("kept")
    save = loop_module.save_checkpoint

    def interrupted_at_last(path, body):
        if path.name == "last.pt":
            raise KeyboardInterrupt
        save(path, body)

    monkeypatch.setattr(loop_module, "save_checkpoint", interrupted_at_last)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out=run, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("schedule", "rate"),
    [
        ("constant", lambda e: 1.0),
        ("step", lambda e: 0.8 ** (e // 2)),  # every lr_step_epochs = 2 epochs, times lr_gamma
        ("exponential", lambda e: 0.8**e),
        ("cosine", lambda e: (1 + math.cos(math.pi * e / 5)) / 2),  # over train.epochs = 5
    ],
)
def test_each_epoch_records_the_rate_it_trained_with(schedule, rate, config_factory):
    cfg = config_factory(
        **{
            "train.epochs": 5,
            "train.lr_schedule": schedule,
            "train.lr_step_epochs": 2,
            "train.lr_gamma": 0.8,
        }
    )
    res = train(cfg)
    assert [r["lr"] for r in res.history] == pytest.approx([1e-3 * rate(e) for e in range(5)])


def test_a_cosine_schedule_extended_on_resume_follows_the_new_curve(config_factory, tmp_path):
    """Trained 2 of 2 epochs, then resumed to 5: epochs 3-5 run at the 5-epoch curve's rates (torch's recursive
    CosineAnnealingLR kept the 2-epoch period and went 0, 5e-4, 1e-3 instead)."""
    cfg = config_factory(**{"train.epochs": 2, "train.lr_schedule": "cosine"})
    train(cfg, out=tmp_path / "r")
    res = train(
        cfg.replace(**{"train.epochs": 5}), out=tmp_path / "r", resume=True, explicit={"train.epochs"}
    )
    lrs = [r["lr"] for r in res.history]
    assert lrs[:2] == pytest.approx([1e-3, 5e-4])  # the 2-epoch curve that was trained
    assert lrs[2:] == pytest.approx([1e-3 * (1 + math.cos(math.pi * e / 5)) / 2 for e in (2, 3, 4)])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train.lr_step_epochs", 0, "train.lr_step_epochs must be >= 1, got 0"),
        ("train.lr_gamma", -1.0, "train.lr_gamma must be > 0, got -1.0"),
        ("train.weight_decay", -5.0, "train.weight_decay must be >= 0, got -5.0"),
        ("train.grad_clip", -1.0, "train.grad_clip must be >= 0 (0: no clipping), got -1.0"),
        ("train.grad_clip_value", -1.0, "train.grad_clip_value must be >= 0 (0: no clipping), got -1.0"),
        ("train.threads", -3, "train.threads must be >= 0 (0: the default), got -3"),
        ("objective.warmup_epochs", float("nan"), "objective.warmup_epochs must be a finite number, got nan"),
        ("train.lr_gamma", float("inf"), "train.lr_gamma must be a finite number, got inf"),
    ],
)
def test_out_of_range_training_settings_are_refused(key, value, message, config_factory):
    """They gave a ZeroDivisionError or torch ValueError traceback, a negative rate, or were silently ignored.
    The message is the one setting and its value (it listed every constraint of the group)."""
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        train(config_factory(**{key: value}))


def test_adagrad_trains_with_its_accumulators(config_factory, tmp_path):
    res = train(
        config_factory(**{"train.epochs": 3, "train.optimizer": "adagrad", "train.lr": 0.05}), out=tmp_path
    )
    elbos = [r["train_elbo"] for r in res.history]
    assert elbos[-1] > elbos[0] + 1.0
    state = read_checkpoint(tmp_path / "checkpoints" / "last.pt")["optimizer"]["state"]
    assert state and all("sum" in s and "exp_avg" not in s for s in state.values())  # Adagrad's, not Adam's


def test_resume_on_images_of_another_size_is_refused(tmp_path, config_factory):
    train(config_factory(**{"train.epochs": 1}), out=tmp_path / "r")
    before = (tmp_path / "r/checkpoints/last.pt").read_bytes()
    bigger = load_data(config_factory(**{"data.name": "mnist-5k"}).data)  # e.g. a folder: source refilled
    with pytest.raises(
        DataError, match=r"--resume: the data's images are \(1, 28, 28\), .* built for \(1, 8, 8\)"
    ):
        train(
            config_factory(**{"train.epochs": 2}),
            out=tmp_path / "r",
            resume=True,
            data=bigger,
            explicit={"train.epochs"},  # a second epoch to train (without it, nothing is left to train)
        )
    assert (tmp_path / "r/checkpoints/last.pt").read_bytes() == before


def test_without_the_test_split_training_is_the_same_and_only_the_test_records_go(config_factory):
    """train.eval_test false: the same weights and train/valid numbers; no test_* keys (the test split unread)."""
    cfg = config_factory(**{"train.epochs": 2, "data.valid_fraction": 0.2, "data.binarize": "dynamic"})
    both = train(cfg)
    valid_only = train(cfg.replace(**{"train.eval_test": False}))
    for (k, a), (_, b) in zip(both.model.state_dict().items(), valid_only.model.state_dict().items()):
        assert torch.equal(a, b), k
    for full, lean in zip(both.history, valid_only.history):
        assert any(k.startswith("test_") for k in full)
        assert not any(k.startswith("test_") for k in lean)
        assert {
            k: v
            for k, v in full.items()
            if not k.startswith("test_") and k not in ("seconds", "samples_per_s")
        } == {k: v for k, v in lean.items() if k not in ("seconds", "samples_per_s")}


@pytest.mark.parametrize(
    ("flat", "norm_at_most", "element_at_most"),
    [
        ({}, None, None),
        ({"train.grad_clip": 0.05}, 0.05, None),
        ({"train.grad_clip_value": 1e-3}, None, 1e-3),
        ({"train.grad_clip": 0.05, "train.grad_clip_value": 1e-3}, 0.05, 1e-3),
    ],
)
def test_gradient_clipping_bounds_what_the_optimiser_sees(
    flat, norm_at_most, element_at_most, config_factory
):
    """train.grad_clip bounds the total norm and train.grad_clip_value each element of every step's gradient;
    unclipped, this model's gradients exceed both bounds (so the bounds are not met by chance)."""
    seen: list[tuple[float, float]] = []

    def look(opt, args, kwargs):
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        seen.append(
            (
                float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))),
                max(float(g.abs().max()) for g in grads),
            )
        )

    hook = register_optimizer_step_pre_hook(look)
    try:
        train(config_factory(**{"train.epochs": 1, **flat}))
    finally:
        hook.remove()
    norms, tops = zip(*seen, strict=True)
    if norm_at_most is None and element_at_most is None:
        assert min(norms) > 0.05 and min(tops) > 1e-3
    if norm_at_most is not None:
        assert max(norms) <= norm_at_most * (1 + 1e-5)
    if element_at_most is not None:
        assert max(tops) <= float(torch.tensor(element_at_most))  # the bound as float32 holds it
