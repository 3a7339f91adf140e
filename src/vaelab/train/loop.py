"""The training loop, short enough to read top to bottom (in the spirit of nanoGPT).

Per epoch: a seeded permutation of in-memory images, batches as index slices, the model's objective,
an optimiser step; then validation and test statistics on a fixed draw, `metrics.jsonl`, and atomic
`last.pt` / `best.pt`. Every RNG is an explicit generator saved in the checkpoint, so `resume=True`
continues a stopped run to the same bits (on CPU). A non-finite loss stops training, keeping the last
good checkpoint, or restarts it at a lower rate.

Under torchrun (or `vaelab train --nproc N`) the same loop runs data-parallel (`vaelab.train.distributed`):
each rank takes its share of every global batch, DDP averages the gradients, rank 0 alone writes files,
and a run ends close to the one-process run with the same global batch and seed. What surrounds the loop
lives beside it: `validate` (the config), `optim` (optimisers, schedules), `precision`, `compiled`,
`finite` (the non-finite guard), `restarts`, `resume` and `ema` (weight averaging: what is scored and saved).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from vaelab.config import Config
from vaelab.data import Prepared, epoch_batches, prepare
from vaelab.data.batches import Share, batch_share
from vaelab.data.python import STAGED, adopt_staged, resolve_data
from vaelab.device import flush_denormals, keep_freed_memory
from vaelab.errors import DataError
from vaelab.io import atomic_write_json, check_can_create, ensure_dir, remove_stale_temporaries
from vaelab.models.protocol import capabilities
from vaelab.models.registry import build_model, get_spec, objective_name
from vaelab.objectives import OBJECTIVES, kl_weight
from vaelab.runs import RunDir, hold_lock
from vaelab.train import distributed
from vaelab.train.checkpoint import model_from_checkpoint, save_checkpoint
from vaelab.train.compiled import Compiled
from vaelab.train.distributed import World
from vaelab.train.ema import WeightAverage, check_averageable
from vaelab.train.finite import FiniteWatch
from vaelab.train.loggers import Loggers, Session, open_loggers
from vaelab.train.optim import OPTIMIZERS, SCHEDULES, iwae_lr_factor, make_optimizer, make_scheduler
from vaelab.train.precision import PRECISIONS, autocast, warn_if_emulated
from vaelab.train.restarts import DIVERGE_ACTIONS, scale_rates, with_restarts
from vaelab.train.resume import (
    RESUMABLE_CHANGES,
    check_start,
    open_run,
    restore,
    resume_config,
    rng_state,
)
from vaelab.train.scoring import ObjectiveModule, evaluate_split, label_args
from vaelab.train.validate import check_compatible, check_world, validate_config

__all__ = [  # the names this module has always offered, most now defined beside it
    "DIVERGE_ACTIONS",
    "OPTIMIZERS",
    "PRECISIONS",
    "RESUMABLE_CHANGES",
    "SCHEDULES",
    "Compiled",
    "FiniteWatch",
    "ObjectiveModule",
    "TrainResult",
    "check_compatible",
    "check_world",
    "evaluate_split",
    "iwae_lr_factor",
    "label_args",
    "make_optimizer",
    "make_scheduler",
    "primary_stat",
    "resume_config",
    "train",
    "validate_config",
]

_autocast = autocast  # the name benchmarks/roofline.py imports


@dataclass
class TrainResult:
    """What `train` returns: the trained model, the per-epoch records and where the run lives."""

    model: nn.Module
    history: list[dict[str, Any]]
    config: Config
    run_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    nothing_to_train: bool = False  # a resumed run that already had train.epochs epochs: no file was written


def primary_stat(stats: dict[str, float]) -> str:
    """The statistic that picks best.pt: exact log p(x) (PixelCNN), the IWAE bound or the ELBO, else
    reconstruction (a GAN has none of them: its runs keep last.pt only).

    Args:
        stats: one epoch's statistics, by name.
    """
    return next((k for k in ("log_px", "iwae", "elbo") if k in stats), "rec")


def train(
    config: Config,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    data: Any = None,
    explicit: set[str] | None = None,
    overwrite: bool = False,
    on_epoch: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """Train `config.model` on `config.data`; with `out`, write the run folder; with `resume`, continue it.

    Under torchrun every rank calls this with the same arguments; rank 0 alone writes the run folder, and holds
    its lock (`vaelab.runs.hold_lock`: a second training into the same folder is refused) while it trains.
    `train.epochs` 0 saves the untrained model as last.pt (a baseline). A resumed run that already has
    `train.epochs` epochs says so on stderr and returns its saved model, writing nothing.
    Denormal floats are flushed to zero while it runs, and freed memory stays in the process (`vaelab.device`).

    Args:
        config: the run's config.
        out: the run folder to write (None: train without files).
        resume: continue the run in `out` from its last checkpoint (its saved config, see `explicit`).
        data: what to train on: None loads `config.data`; DataSplits; or data from Python, a tensor, a torch
            Dataset, a (train, test) pair or a DataFrame, saved in the run (`vaelab.data.python`).
        explicit: on resume, the dotted keys set on purpose; of them only RESUMABLE_CHANGES may differ from
            the saved config.
        overwrite: start again in an `out` that already holds a trained run (otherwise refused).
        on_epoch: called with each epoch's metrics record (the line `metrics.jsonl` gets) once its checkpoint
            is written, outside the epoch's timing; if it returns True, training ends there (on any rank: all
            ranks stop together), e.g. for a time budget.
    """
    keep_freed_memory()
    check_start(resume, overwrite)
    run = RunDir.at(out) if out is not None else None
    w = distributed.world()
    with hold_lock(run) if run is not None and w.main else contextlib.nullcontext():
        # a fresh start that ends before its first checkpoint (diverged, refused, interrupted) leaves no shell
        before = run.entries() if run is not None and w.main and not resume else None
        try:
            return _start(config, run, resume, data, explicit, overwrite, on_epoch, w)
        except BaseException:
            if before is not None:
                run.discard_unstarted(before)
            raise


def _start(
    config: Config,
    run: RunDir | None,
    resume: bool,
    data: Any,
    explicit: set[str] | None,
    overwrite: bool,
    on_epoch: Callable[[dict[str, Any]], bool | None] | None,
    w: World,
) -> TrainResult:
    """`train` once the run folder is locked."""
    ckpt, config = open_run(run, config, resume, overwrite, explicit)
    validate_config(config)
    check_world(config, w)
    if ckpt is not None and run is not None and ckpt["epoch"] >= config.train.epochs:
        if w.main:
            remove_stale_temporaries(run.root)  # a kill during the last figures left them; nothing else will
            done = f"{ckpt['epoch']} epoch{'s' * (ckpt['epoch'] != 1)}"
            print(
                f"vaelab: note: {run.root} already has {done} (train.epochs is {config.train.epochs}): "
                "nothing to train; ask for more (--epochs / train.epochs) to continue it",
                file=sys.stderr,
            )
        model = model_from_checkpoint(ckpt, run.last).eval()
        return TrainResult(model, list(ckpt["history"]), config, run.root, nothing_to_train=True)
    device = distributed.device_for(config.train.device, w)
    if w.main:
        warn_if_emulated(device, config.train.precision)
    torch.set_num_threads(
        config.train.threads if config.train.threads > 0 else distributed.default_threads(w)
    )
    with (
        open_loggers(config, run, w.main) as logs,
        distributed.session(device, config.train.dist_timeout),
        flush_denormals(),
    ):
        return with_restarts(
            lambda ck, lr_factor: _train(config, run, ck, data, device, w, lr_factor, on_epoch, logs),
            config.train,
            run,
            ckpt,
            main=w.main,
        )


def _train(
    cfg: Config,
    run: RunDir | None,
    ckpt: dict | None,
    data: Any,
    device: torch.device,
    w: World,
    lr_factor: float = 1.0,
    on_epoch: Callable[[dict[str, Any]], bool | None] | None = None,
    logs: Loggers | None = None,
) -> TrainResult:
    logs = logs if logs is not None else Loggers([])
    if run is not None and w.main:
        check_can_create(run.checkpoints)  # fail fast, but create nothing before the data and model are good
        remove_stale_temporaries(run.root)
    # None: cfg.data; DataSplits; or tensors, a Dataset, a (train, test) pair, a DataFrame (saved in the run)
    # over a trained run (--overwrite), data from Python waits in RUN/.staged-data until the old run is cleared:
    # a refusal before then leaves the old run whole, its data file with it
    staged = run is not None and w.main and ckpt is None and run.last.is_file()
    folder = (run.root / STAGED if staged else run.root) if run is not None and w.main else None
    data, cfg = resolve_data(cfg, data, folder)
    if ckpt is not None and tuple(ckpt["shape"]) != data.shape:
        raise DataError(
            f"--resume: the data's images are {data.shape}, the checkpoint's model was built for {tuple(ckpt['shape'])}"
        )
    check_compatible(cfg, data)
    check_world(cfg, w, len(data.train.images))

    torch.manual_seed(cfg.train.seed)
    spec = get_spec(cfg.model.name)
    model = build_model(cfg.model, data.shape).to(device)
    if cfg.train.ema > 0:
        check_averageable(model, cfg.model.name)
    objective = OBJECTIVES[objective_name(cfg)]
    # a model may name parameter groups with their own settings (the GAN: Adam betas (0.5, 0.999), DCGAN's)
    params = model.param_groups() if capabilities(model).param_groups else model.parameters()
    optimizer = make_optimizer(cfg.train, params)
    scheduler = make_scheduler(cfg.train, optimizer)
    # Every rank holds the same generators: each draws the whole global batch's noise and keeps its rows.
    g_perm = torch.Generator().manual_seed(cfg.train.seed + 1)
    g_noise = torch.Generator(device=device).manual_seed(cfg.train.seed + 2)

    train_data = prepare(data.train, cfg.data.binarize, device, cfg.data.binarize_seed, train=True)
    evals: dict[str, Prepared] = {}
    if cfg.train.eval_test:  # off: the test split is only read by the scoring that follows (vaelab eval)
        evals["test"] = prepare(data.test, cfg.data.binarize, device, cfg.data.binarize_seed + 1, train=False)
    if data.valid is not None:
        evals["valid"] = prepare(
            data.valid, cfg.data.binarize, device, cfg.data.binarize_seed + 2, train=False
        )

    epoch, step, history, best = 0, 0, [], -math.inf
    if ckpt is not None:
        epoch, step, history, best = restore(ckpt, model, optimizer, scheduler, g_perm, g_noise)
    scale_rates(optimizer, scheduler, lr_factor, ckpt)  # after a divergence: the same run, a smaller step
    # --ema: the average of the weights is what each epoch scores and what checkpoints ship (vaelab.train.ema)
    ema = WeightAverage(model, cfg.train.ema) if cfg.train.ema > 0 else None
    if ema is not None and ckpt is not None:
        ema.load(ckpt)
    scored = ema.module if ema is not None else model
    if run is not None and w.main:
        if ckpt is None:  # a fresh start (--overwrite): nothing of an older model may stay beside this one
            run.clear_outputs(keep_mlflow="mlflow" in cfg.train.log)
        if staged:  # the old run is cleared: its data file's place is free
            cfg = adopt_staged(cfg, run.root)
        ensure_dir(run.checkpoints)
        atomic_write_json(run.config, cfg.to_dict())
        run.write_metrics(history)
        logs.start(Session(run, cfg, scored, evals, list(history), fresh=ckpt is None))

    def payload() -> dict[str, Any]:
        return {
            "model": scored.state_dict(),
            **({"ema": ema.entry(model)} if ema is not None else {}),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "config": cfg.to_dict(),
            "shape": list(data.shape),
            "epoch": epoch,
            "step": step,
            "rng": rng_state(g_perm, g_noise),
            "history": history,
            "best": best,
            "lr_factor": lr_factor,
        }

    net = distributed.wrap(ObjectiveModule(model, objective, cfg.objective), device)
    forward = Compiled(net) if cfg.train.compile else net
    watch = FiniteWatch(
        device, lambda: f"{run.last}" if run is not None and run.last.is_file() else "none written yet"
    )
    show = cfg.train.progress and w.main
    while epoch < cfg.train.epochs:
        model.train()
        start = time.perf_counter()
        batches = epoch_batches(len(train_data), cfg.train.batch_size, g_perm)
        if w.distributed and len(batches[-1]) < w.size:
            batches.pop()  # every rank needs at least one datum of a batch
        sums: dict[str, torch.Tensor] = {}
        bar = tqdm(  # disable=None: shown when stderr is a terminal
            batches,
            desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            disable=None if show else True,
            leave=False,
            unit="batch",
        )
        done = 0
        for i, global_idx in enumerate(bar):
            done += len(global_idx)
            rows = distributed.shard(len(global_idx), w)
            beta = kl_weight(cfg.objective, step, len(batches))
            with batch_share(Share(rows, len(global_idx)) if w.distributed else None):
                x = train_data.batch(global_idx[rows], g_noise)
                labels = label_args(train_data, global_idx[rows], spec.needs_labels)
                with autocast(device, cfg.train.precision):
                    res = forward(x, beta, g_noise, labels)
            watch.add(res.loss, epoch + 1, i + 1)
            loss = res.loss
            if w.distributed:  # DDP averages over ranks: weigh each rank's mean by its share of the batch
                loss = loss * (w.size * (rows.stop - rows.start) / len(global_idx))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            if cfg.train.grad_clip_value > 0:
                nn.utils.clip_grad_value_(model.parameters(), cfg.train.grad_clip_value)
            optimizer.step()
            if ema is not None:
                ema.update()
            step += 1
            for k, v in res.stats.items():
                s = v.detach().sum()
                sums[k] = sums[k] + s if k in sums else s
            if not bar.disable and (i % 20 == 0 or i == len(batches) - 1):
                bar.set_postfix(
                    {
                        "loss": f"{float(res.loss.detach()):.2f}",
                        "samples/s": f"{done / max(time.perf_counter() - start, 1e-9):.0f}",
                        **{k: f"{float(v.detach().float().mean()):.2f}" for k, v in res.stats.items()},
                    }
                )
        watch.flush()
        lr = optimizer.param_groups[0]["lr"]  # the rate this epoch trained with, before the schedule moves it
        scheduler.step()
        seconds = time.perf_counter() - start
        epoch += 1
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "seconds": seconds,
            "samples_per_s": len(train_data) / seconds if seconds > 0 else None,
            "lr": lr,
            "beta": kl_weight(cfg.objective, step - 1, max(len(batches), 1)),
        }
        if sums:
            totals = distributed.all_reduce_sum(torch.stack([v.float() for v in sums.values()])).tolist()
            record.update({f"train_{k}": v / len(train_data) for k, v in zip(sums, totals)})
        for name, split in evals.items():
            stats = evaluate_split(scored, split, objective, cfg, cfg.train.eval_seed, spec.needs_labels)
            record.update({f"{name}_{k}": v for k, v in stats.items()})
        history.append(record)
        key = primary_stat({k.split("_", 1)[1]: v for k, v in record.items() if k.startswith("train_")})
        score = record.get(f"valid_{key}", record.get(f"train_{key}", -math.inf))
        if "valid_error" in record:  # a classifier (M2 & co.): best.pt is the epoch it classifies best
            score = -record["valid_error"]
        improved = score > best
        best = max(best, score)
        if show:
            shown = {k: round(v, 2) for k, v in record.items() if k.startswith(("train_", "valid_", "test_"))}
            tqdm.write(f"epoch {epoch}: {shown} ({seconds:.1f} s)")
        if run is not None and w.main:
            body = payload()
            if improved:  # best.pt first: last.pt is what marks the epoch done, so a kill between the two
                save_checkpoint(run.best, body)  # writes repeats the epoch on resume and rewrites best.pt
            save_checkpoint(run.last, body)
            run.write_metrics(history)
            logs.epoch(record)  # after the checkpoint: a resume never logs an epoch twice
        if on_epoch is not None and distributed.any_rank(on_epoch(dict(record)) is True, device):
            break
    if ckpt is None and epoch == 0 and run is not None and w.main:  # train.epochs 0: the untrained model
        save_checkpoint(run.last, payload())
        print(
            f"vaelab: note: train.epochs is 0: saved the untrained model as {run.last} (epoch 0), a baseline",
            file=sys.stderr,
        )
    distributed.barrier()  # no rank returns before rank 0 has written the run folder
    extra = {"raw_model": model.eval()} if ema is not None else {}
    return TrainResult(scored.eval(), history, cfg, run.root if run is not None else None, extra)
