"""The training loop, short enough to read top to bottom (in the spirit of nanoGPT).

Per epoch: a seeded permutation of in-memory images, batches as index slices, the model's objective,
an optimiser step; then validation and test statistics on a fixed draw, `metrics.jsonl`, and atomic
`last.pt` / `best.pt`. Every RNG is an explicit generator saved in the checkpoint, so `resume=True`
continues a stopped run to the same bits (on CPU). A non-finite loss stops training, keeping the last
good checkpoint.

Under torchrun (or `vaelab train --nproc N`) the same loop runs data-parallel (`vaelab.train.distributed`):
each rank takes its share of every global batch, DDP averages the gradients, rank 0 alone writes files,
and a run ends close to the one-process run with the same global batch and seed. Speed on one CPU: fused
Adam, binarization by one uniform draw, no host syncs but the (free on CPU) finite-loss check, evaluation
under inference_mode; bf16 autocast and torch.compile are options.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from vaelab.config import Config, ObjectiveConfig, TrainConfig
from vaelab.data import DataSplits, Prepared, epoch_batches, load_data, prepare
from vaelab.data.batches import Share, batch_share
from vaelab.device import flush_denormals, keep_freed_memory, native_bf16
from vaelab.errors import ConfigError, DataError, TrainingDiverged
from vaelab.io import atomic_write_json, check_can_create, ensure_dir, remove_stale_temporaries
from vaelab.models.registry import MODELS, build_model, check_model_config, get_spec, objective_name
from vaelab.objectives.elbo import OBJECTIVES, Objective, Step, check_schedule, kl_weight
from vaelab.runs import RunDir
from vaelab.train import distributed
from vaelab.train.checkpoint import config_of, read_checkpoint, save_checkpoint
from vaelab.train.distributed import World

OPTIMIZERS = ("adam", "adagrad")
SCHEDULES = ("constant", "step", "exponential", "cosine", "iwae")
PRECISIONS = ("fp32", "bf16")


def iwae_lr_factor(epoch: int) -> float:
    """Burda et al. 2016: 3^i epochs at lr * 10^(-i/7) for i = 0..7 (3,280 epochs), then the last rate."""
    i, end = 0, 1
    while epoch >= end and i < 7:
        i += 1
        end += 3**i
    return 10.0 ** (-i / 7)


# Settings a resumed run may change; anything else must match the checkpoint's config.
RESUMABLE_CHANGES = (
    "train.epochs",
    "train.device",
    "train.progress",
    "train.threads",
    "train.compile",
    "train.dist_timeout",
    "train.on_diverge",
    "train.max_restarts",
    "data.data_dir",
)
DIVERGE_ACTIONS = ("stop", "restart")


@dataclass
class TrainResult:
    """What `train` returns: the trained model, the per-epoch records and where the run lives."""

    model: nn.Module
    history: list[dict[str, Any]]
    config: Config
    run_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """Adam or Adagrad (Kingma & Welling 2014 used Adagrad with batches of 100), as one fused kernel per
    step where the device has one, else the multi-tensor (foreach) form."""
    table = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad}
    if cfg.optimizer not in table:
        raise ConfigError(f"unknown optimizer '{cfg.optimizer}'; choose one of: {', '.join(OPTIMIZERS)}")
    params = list(params)
    try:
        return table[cfg.optimizer](params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return table[cfg.optimizer](params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-epoch learning-rate schedule."""
    sched = torch.optim.lr_scheduler
    table = {
        "constant": lambda: sched.LambdaLR(opt, lambda _: 1.0),
        "step": lambda: sched.StepLR(opt, cfg.lr_step_epochs, cfg.lr_gamma),
        "exponential": lambda: sched.ExponentialLR(opt, cfg.lr_gamma),
        # closed form of the epoch, not torch's recursive CosineAnnealingLR: a resume that extends the epochs
        # then follows the new curve (the recursive form kept the old period and went back up)
        "cosine": lambda: sched.LambdaLR(
            opt, lambda e: 0.5 * (1 + math.cos(math.pi * min(e, cfg.epochs) / max(cfg.epochs, 1)))
        ),
        "iwae": lambda: sched.LambdaLR(opt, iwae_lr_factor),
    }
    if cfg.lr_schedule not in table:
        raise ConfigError(f"unknown lr_schedule '{cfg.lr_schedule}'; choose one of: {', '.join(SCHEDULES)}")
    return table[cfg.lr_schedule]()


def validate_config(cfg: Config) -> None:
    """Check every name in the config against its registry before any data is read."""
    from vaelab.data.binarize import MODES
    from vaelab.data.sources import FOLDER_PREFIX, source_names
    from vaelab.distributions.likelihoods import GAUSSIAN_VARIANCES, LIKELIHOODS
    from vaelab.models.vae import BODIES
    from vaelab.nets.mlp import MLP_ACTIVATIONS
    from vaelab.objectives.elbo import KL_ESTIMATORS
    from vaelab.objectives.noise import NOISES, check_noise

    checks = [
        ("data set", cfg.data.name, [*source_names()[:-1]], cfg.data.name.startswith(FOLDER_PREFIX)),
        ("binarization", cfg.data.binarize, MODES, False),
        ("model", cfg.model.name, list(MODELS), False),
        ("body", cfg.model.body, BODIES, False),
        ("activation", cfg.model.activation, list(MLP_ACTIVATIONS), False),
        ("likelihood", cfg.model.likelihood, list(LIKELIHOODS), False),
        ("gaussian_variance", cfg.model.gaussian_variance, GAUSSIAN_VARIANCES, False),
        ("KL estimator", cfg.objective.kl, KL_ESTIMATORS, False),
        ("objective", cfg.objective.name, ["default", *OBJECTIVES], False),
        ("noise", cfg.objective.noise, NOISES, False),
        ("optimizer", cfg.train.optimizer, OPTIMIZERS, False),
        ("lr_schedule", cfg.train.lr_schedule, SCHEDULES, False),
        ("on_diverge action", cfg.train.on_diverge, DIVERGE_ACTIONS, False),
        ("precision", cfg.train.precision, PRECISIONS, False),
    ]
    for what, value, choices, ok in checks:
        if not ok and value not in choices:
            extra = ", folder:PATH" if what == "data set" else ""
            raise ConfigError(f"unknown {what} '{value}'; choose one of: {', '.join(choices)}{extra}")
    t = cfg.train
    numbers = {
        "train.lr_gamma": t.lr_gamma,
        "train.weight_decay": t.weight_decay,
        "train.grad_clip": t.grad_clip,
    }
    numbers.update(
        {"objective.warmup_epochs": cfg.objective.warmup_epochs, "objective.beta": cfg.objective.beta}
    )
    bad = [k for k, v in numbers.items() if not math.isfinite(v)]
    if bad:
        raise ConfigError(f"{', '.join(bad)} must be a finite number")
    if t.lr_step_epochs < 1 or not t.lr_gamma > 0 or t.weight_decay < 0 or t.grad_clip < 0 or t.threads < 0:
        raise ConfigError(
            "need train.lr_step_epochs >= 1, train.lr_gamma > 0, train.weight_decay >= 0, train.grad_clip >= 0 "
            f"and train.threads >= 0 (0: the default), got {t.lr_step_epochs}, {t.lr_gamma}, {t.weight_decay}, "
            f"{t.grad_clip} and {t.threads}"
        )
    if t.epochs < 0 or t.batch_size < 1 or not t.lr > 0 or t.eval_batch_size < 1:
        raise ConfigError(
            "need train.epochs >= 0, train.batch_size >= 1, train.eval_batch_size >= 1 and train.lr > 0"
        )
    if cfg.model.latent_dim < 1 or cfg.objective.num_samples < 1:
        raise ConfigError("need model.latent_dim >= 1 and objective.num_samples >= 1")
    for key in ("hidden", "conv_channels"):
        sizes = getattr(cfg.model, key)
        if any(n < 1 for n in sizes):
            raise ConfigError(f"need every model.{key} size >= 1, got {list(sizes)}")
    if not t.dist_timeout > 0:
        raise ConfigError(f"need train.dist_timeout > 0 seconds, got {t.dist_timeout}")
    if t.max_restarts < 0 or not 0 < t.restart_lr_factor < 1:
        raise ConfigError("need train.max_restarts >= 0 and 0 < train.restart_lr_factor < 1")
    o = cfg.objective
    check_schedule(o)
    if o.noise != "none":
        check_noise(o.noise, o.noise_level)
    if o.dreg and objective_name(cfg) != "iwae":
        raise ConfigError(
            "objective.dreg changes the gradient of the IWAE bound: use it with objective.name=iwae"
        )
    if o.dreg and o.free_bits > 0:
        raise ConfigError(
            "objective.dreg reweights every gradient through z by the importance weights, the free-bits "
            "penalty's too: use objective.dreg or objective.free_bits, not both"
        )
    if cfg.data.labelled < 0:
        raise ConfigError(f"need data.labelled >= 0, got {cfg.data.labelled}")
    check_model_config(cfg)


def check_world(cfg: Config, w: World, n_train: int | None = None) -> None:
    """A distributed run splits every global batch evenly over its ranks, and each rank needs data."""
    if not w.distributed:
        return
    b = cfg.train.batch_size
    if cfg.train.eval_batch_size < w.size:
        raise ConfigError(
            f"{w.size} processes but train.eval_batch_size {cfg.train.eval_batch_size}: every rank needs a "
            "share of each evaluation batch"
        )
    if b % w.size != 0:
        raise ConfigError(
            f"world size {w.size} does not divide train.batch_size {b}; use a batch size that is a multiple "
            f"of {w.size} (each rank takes batch_size / world_size of every global batch)"
        )
    if n_train is not None and n_train < w.size:
        raise ConfigError(
            f"{w.size} processes but {cfg.data.name} has only {n_train} training image(s): "
            f"use at most {n_train} processes"
        )


def check_compatible(cfg: Config, data: DataSplits) -> None:
    """Refuse data the model cannot honestly score (e.g. a Bernoulli likelihood on grey levels)."""
    lik = cfg.model.likelihood
    if lik == "bernoulli" and cfg.data.binarize == "none":
        raise ConfigError(
            "likelihood 'bernoulli' needs binary pixels: use --binarize dynamic or static, "
            "or --likelihood continuous-bernoulli / gaussian / discretized-logistic for grey levels"
        )
    if get_spec(cfg.model.name).needs_labels and data.train.labels is None:
        raise DataError(f"model '{cfg.model.name}' needs labels, and {cfg.data.name} has none")


def label_args(data: Prepared, index: torch.Tensor | slice, wanted: bool) -> dict[str, torch.Tensor]:
    """`{"y": labels}` of the batch at `index` for models that need labels (their objectives take y=), else {}."""
    return {"y": data.labels_at(index)} if wanted else {}


@torch.inference_mode()
def evaluate_split(
    model: nn.Module, data: Prepared, objective: Objective, cfg: Config, seed: int, labels: bool = False
) -> dict[str, float]:
    """Mean per-datum statistics of the objective (beta = 1) on a fixed draw, with a fixed noise seed
    (and the split's labels, with `labels`).

    Inside a process group every rank scores its share of each batch (noise drawn for the whole batch, so
    each datum's draw is the one-process draw) and the sums are all-reduced: call it on every rank.
    """
    was_training = model.training
    model.eval()
    w = distributed.world()
    g = torch.Generator(device=data.images.device).manual_seed(seed)
    sums: dict[str, torch.Tensor] = {}
    size = cfg.train.eval_batch_size
    for start in range(0, len(data), size):
        n = min(size, len(data) - start)
        rows = distributed.shard(n, w)
        if rows.stop == rows.start:  # a last batch smaller than the world: this rank scores nothing of it
            continue
        with batch_share(Share(rows, n) if w.distributed else None):
            index = slice(start + rows.start, start + rows.stop)
            step = objective(
                model, data.batch(index), cfg.objective, 1.0, g, **label_args(data, index, labels)
            )
        for k, v in step.stats.items():
            s = v.double().sum()
            sums[k] = sums[k] + s if k in sums else s
    model.train(was_training)
    if not sums:
        return {}
    totals = distributed.all_reduce_sum(torch.stack(list(sums.values()))).tolist()
    return {k: v / len(data) for k, v in zip(sums, totals)}


class ObjectiveModule(nn.Module):
    """The model and its training objective as one module, so that DDP and torch.compile see the whole loss."""

    def __init__(self, model: nn.Module, objective: Objective, cfg: ObjectiveConfig) -> None:
        super().__init__()
        self.model, self.objective, self.cfg = model, objective, cfg

    def forward(
        self, x: torch.Tensor, beta: float, generator: torch.Generator | None, labels: dict | None = None
    ) -> Step:
        return self.objective(self.model, x, self.cfg, beta, generator, **(labels or {}))


class Compiled:
    """torch.compile of a module with an eager fallback: if compiling fails, say so once and run eager."""

    def __init__(self, module: nn.Module) -> None:
        self.eager, self.fn = module, torch.compile(module)

    def __call__(self, *args: object) -> Step:
        if self.fn is not self.eager:
            try:
                return self.fn(*args)
            except Exception as e:  # inductor needs a C++ compiler and supported ops; eager always works
                warnings.warn(f"torch.compile failed ({type(e).__name__}); training eagerly", stacklevel=2)
                self.fn = self.eager
        return self.eager(*args)


class FiniteWatch:
    """Stops at a non-finite loss, naming its epoch and step. On the CPU reading a loss costs nothing, so each
    step is checked before its update; on an accelerator the losses are checked every `every` steps. In a
    process group the ranks agree (an all-reduce of one flag per check): a loss gone bad on one rank stops
    or restarts them all together, instead of leaving the others waiting in backward until the timeout."""

    def __init__(self, device: torch.device, where: Callable[[], str], every: int = 50) -> None:
        self.on_host, self.where, self.every = device.type == "cpu", where, every
        self.device = device
        self.pending: list[tuple[torch.Tensor, int, int]] = []

    def add(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        if self.on_host:
            value = loss.item()
            if distributed.any_rank(not math.isfinite(value), self.device):
                self._stop(value, epoch, step)
            return
        self.pending.append((loss.detach(), epoch, step))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        values = torch.stack([p[0].float() for p in self.pending]).cpu()
        bad = (~torch.isfinite(values)).nonzero()
        if distributed.any_rank(len(bad) > 0, self.device):
            i = int(bad[0]) if len(bad) else len(self.pending) - 1
            _, epoch, step = self.pending[i]
            self._stop(float(values[i]), epoch, step)
        self.pending.clear()

    def _stop(self, value: float, epoch: int, step: int) -> None:
        what = (
            f"loss became {value}"
            if not math.isfinite(value)
            else "the loss became non-finite on another rank"
        )
        raise TrainingDiverged(
            f"{what} at epoch {epoch}, step {step}; training stopped; last good checkpoint: {self.where()}"
        )


def _rng_state(g_perm: torch.Generator, g_noise: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "perm": g_perm.get_state(), "noise": g_noise.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], g_perm: torch.Generator, g_noise: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    g_perm.set_state(state["perm"])
    g_noise.set_state(state["noise"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_config(requested: Config, saved: Config, explicit: set[str]) -> Config:
    """The saved config, with only the explicitly requested changes that a resume may make."""
    want, have = requested.to_dict(), saved.to_dict()
    changes = {}
    for key in sorted(explicit):
        section, _, name = key.partition(".")
        if want[section][name] != have[section][name]:
            if key not in RESUMABLE_CHANGES:
                raise ConfigError(
                    f"--resume continues the saved config; {key} differs ({have[section][name]!r} saved, "
                    f"{want[section][name]!r} asked); only {', '.join(RESUMABLE_CHANGES)} may change"
                )
            changes[key] = want[section][name]
    return saved.replace(**changes)


def primary_stat(stats: dict[str, float]) -> str:
    """The statistic that picks best.pt: exact log p(x) (PixelCNN), the IWAE bound or the ELBO, else
    reconstruction (a GAN has none of them: its runs keep last.pt only)."""
    return next((k for k in ("log_px", "iwae", "elbo") if k in stats), "rec")


def train(
    config: Config,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    data: DataSplits | None = None,
    explicit: set[str] | None = None,
    overwrite: bool = False,
    on_epoch: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """Train `config.model` on `config.data`; with `out`, write the run folder; with `resume`, continue it.

    A folder that already holds a trained run is refused unless `resume` (continue it) or `overwrite`
    (start again) says what to do with it. Under torchrun every rank calls this with the same arguments;
    rank 0 alone writes the run folder. `on_epoch(record)` is called with each epoch's metrics record (the
    line `metrics.jsonl` gets) once its checkpoint is written, outside the epoch's timing; if it returns True,
    training ends there (on any rank: all ranks stop together), e.g. for a time budget. Denormal floats
    are flushed to zero while it runs, and freed memory stays in the process (`vaelab.device`: both
    measured to pay on the CPU).
    """
    keep_freed_memory()
    run = RunDir.at(out) if out is not None else None
    ckpt = None
    if run is not None and not resume and not overwrite and run.last.is_file():
        raise ConfigError(
            f"{run.root} already holds a trained run ({run.last}); pass --resume to continue it, "
            "--overwrite to start again, or another --out"
        )
    if resume:
        if run is None:
            raise ConfigError("resume needs the run folder (--out RUN)")
        if not run.last.is_file():
            raise ConfigError(f"--resume: no checkpoint at {run.last}")
        ckpt = read_checkpoint(run.last)
        config = resume_config(config, config_of(ckpt, run.last), explicit or set())
    validate_config(config)
    w = distributed.world()
    check_world(config, w)
    device = distributed.device_for(config.train.device, w)
    if config.train.precision == "bf16" and w.main and not native_bf16(device):
        print(
            f"vaelab: warning: train.precision=bf16 on {device.type} without native bf16 arithmetic "
            "(AVX512-BF16 or AMX on a CPU): it runs emulated, likely slower than fp32",
            file=sys.stderr,
        )
    torch.set_num_threads(
        config.train.threads if config.train.threads > 0 else distributed.default_threads(w)
    )
    with distributed.session(device, config.train.dist_timeout), flush_denormals():
        return _train_with_restarts(config, run, ckpt, data, device, w, on_epoch)


def _train_with_restarts(
    cfg: Config,
    run: RunDir | None,
    ckpt: dict | None,
    data: DataSplits | None,
    device: torch.device,
    w: World,
    on_epoch: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """`_train`, and with train.on_diverge=restart, after a non-finite loss: back to the last good checkpoint
    (or the start) with the learning rate times train.restart_lr_factor, at most train.max_restarts times."""
    t = cfg.train
    restarts, lr_factor = 0, (ckpt.get("lr_factor", 1.0) if ckpt is not None else 1.0)
    while True:
        try:
            return _train(cfg, run, ckpt, data, device, w, lr_factor=lr_factor, on_epoch=on_epoch)
        except TrainingDiverged as e:
            if t.on_diverge != "restart" or restarts >= t.max_restarts:
                raise
            restarts += 1
            lr_factor *= t.restart_lr_factor
            ckpt = read_checkpoint(run.last) if run is not None and run.last.is_file() else None
            where = f"epoch {ckpt['epoch']} of {run.last}" if ckpt is not None else "the start"
            if w.main:
                print(
                    f"vaelab: {e}; restart {restarts} of {t.max_restarts} from {where} "
                    f"with the learning rate x{t.restart_lr_factor}",
                    file=sys.stderr,
                )


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    return (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )


def _train(
    cfg: Config,
    run: RunDir | None,
    ckpt: dict | None,
    data: DataSplits | None,
    device: torch.device,
    w: World,
    lr_factor: float = 1.0,
    on_epoch: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    if run is not None and w.main:
        check_can_create(run.checkpoints)  # fail fast, but create nothing before the data and model are good
        remove_stale_temporaries(run.root)
    data = data if data is not None else load_data(cfg.data)
    if ckpt is not None and tuple(ckpt["shape"]) != data.shape:
        raise DataError(
            f"--resume: the data's images are {data.shape}, the checkpoint's model was built for {tuple(ckpt['shape'])}"
        )
    check_compatible(cfg, data)
    check_world(cfg, w, len(data.train.images))

    torch.manual_seed(cfg.train.seed)
    spec = get_spec(cfg.model.name)
    model = build_model(cfg.model, data.shape).to(device)
    objective = OBJECTIVES[objective_name(cfg)]
    # a model may name parameter groups with their own settings (the GAN: Adam betas (0.5, 0.999), DCGAN's)
    optimizer = make_optimizer(cfg.train, getattr(model, "param_groups", model.parameters)())
    scheduler = make_scheduler(cfg.train, optimizer)
    # Every rank holds the same generators: each draws the whole global batch's noise and keeps its rows.
    g_perm = torch.Generator().manual_seed(cfg.train.seed + 1)
    g_noise = torch.Generator(device=device).manual_seed(cfg.train.seed + 2)

    train_data = prepare(data.train, cfg.data.binarize, device, cfg.data.binarize_seed, train=True)
    evals = {"test": prepare(data.test, cfg.data.binarize, device, cfg.data.binarize_seed + 1, train=False)}
    if data.valid is not None:
        evals["valid"] = prepare(
            data.valid, cfg.data.binarize, device, cfg.data.binarize_seed + 2, train=False
        )

    epoch, step, history, best = 0, 0, [], -math.inf
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):  # closed form: the resumed epoch's rate
            for group, base, rate in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
                group["lr"] = base * rate(scheduler.last_epoch)  # under this config's epochs
        _set_rng_state(ckpt["rng"], g_perm, g_noise)
        epoch, step, history, best = ckpt["epoch"], ckpt["step"], list(ckpt["history"]), ckpt["best"]
    # after a divergence, the same run with a smaller step: lr_factor is the product of every restart's
    # factor, of which the checkpoint's rates already hold the part it was written with
    change = lr_factor / (ckpt.get("lr_factor", 1.0) if ckpt is not None else 1.0)
    if change != 1.0:
        for group in optimizer.param_groups:
            group["lr"] *= change
        scheduler.base_lrs = [lr * change for lr in scheduler.base_lrs]
    if run is not None and w.main:
        if ckpt is None:  # a fresh start (--overwrite): nothing of an older model may stay beside this one
            run.clear_outputs()
        ensure_dir(run.checkpoints)
        atomic_write_json(run.config, cfg.to_dict())
        run.write_metrics(history)

    def payload() -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "config": cfg.to_dict(),
            "shape": list(data.shape),
            "epoch": epoch,
            "step": step,
            "rng": _rng_state(g_perm, g_noise),
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
        bar = tqdm(
            batches, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not show, leave=False, unit="batch"
        )
        for i, global_idx in enumerate(bar):
            rows = distributed.shard(len(global_idx), w)
            beta = kl_weight(cfg.objective, step, len(batches))
            with batch_share(Share(rows, len(global_idx)) if w.distributed else None):
                x = train_data.batch(global_idx[rows], g_noise)
                labels = label_args(train_data, global_idx[rows], spec.needs_labels)
                with _autocast(device, cfg.train.precision):
                    res = forward(x, beta, g_noise, labels)
            watch.add(res.loss, epoch + 1, i + 1)
            loss = res.loss
            if w.distributed:  # DDP averages over ranks: weigh each rank's mean by its share of the batch
                loss = loss * (w.size * (rows.stop - rows.start) / len(global_idx))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            optimizer.step()
            step += 1
            for k, v in res.stats.items():
                s = v.detach().sum()
                sums[k] = sums[k] + s if k in sums else s
            if show and (i % 20 == 0 or i == len(batches) - 1):
                bar.set_postfix(
                    {
                        "loss": f"{float(res.loss.detach()):.2f}",
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
            stats = evaluate_split(model, split, objective, cfg, cfg.train.eval_seed, spec.needs_labels)
            record.update({f"{name}_{k}": v for k, v in stats.items()})
        history.append(record)
        key = primary_stat({k.split("_", 1)[1]: v for k, v in record.items() if k.startswith("train_")})
        score = record.get(f"valid_{key}", record.get(f"train_{key}", -math.inf))
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
        if on_epoch is not None and distributed.any_rank(on_epoch(dict(record)) is True, device):
            break
    distributed.barrier()  # no rank returns before rank 0 has written the run folder
    return TrainResult(model.eval(), history, cfg, run.root if run is not None else None)
