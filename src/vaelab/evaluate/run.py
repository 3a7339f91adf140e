"""`vaelab.evaluate(run, ...)`: open a run (or take a model and a split), run every estimator of the table that
applies, and return what `vaelab eval` writes to eval.json.

The order is: settings checked (`EvalSettings`), the model and data opened, every applying estimator's
refusal checked (so that "AIS does not apply to X" comes before minutes of importance sampling), then the
estimators run in the table's order, each after those it needs. Under torchrun (or `vaelab eval --nproc N`)
the estimators whose work is shared run on every rank; rank 0 alone runs the rest, and its result is the
whole one.
"""

from __future__ import annotations

import importlib
import inspect
import os
import time
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from vaelab.config import Config
from vaelab.data import SPLIT_SEED_OFFSET, Prepared, prepare_split
from vaelab.device import keep_freed_memory
from vaelab.errors import ConfigError, DataError
from vaelab.evaluate.estimators import ESTIMATORS, Context, Estimate, Estimator, datum_dims
from vaelab.evaluate.settings import EvalSettings
from vaelab.models.protocol import capabilities
from vaelab.train import distributed
from vaelab.train.checkpoint import config_of, model_from_checkpoint, read_checkpoint, resolve_checkpoint

Run = str | os.PathLike | nn.Module

# The package's own estimators, in the table's order (the order they run in, and of eval.json and the printed
# table): each module registers its estimator when imported. Estimators registered elsewhere (a plugin)
# come after these, in the order they were registered.
TABLE = ("exact", "elbo", "importance", "psis", "ais", "bdmc", "classification", "decomposition", "quality")
for _module in TABLE:
    importlib.import_module(f"vaelab.evaluate.{_module}")


def table() -> list[Estimator]:
    """Every registered estimator, in the table's order."""
    rank = {name: i for i, name in enumerate(TABLE)}
    return sorted(ESTIMATORS.values(), key=lambda e: rank.get(e.name, len(TABLE)))


@dataclass
class Evaluation:
    """An evaluation's Estimates with what they were of; `to_json()` is eval.json.

    Args:
        meta: what was evaluated (split, seed, device, run, checkpoint, model, data, binarization, epoch, ...).
        estimates: name -> Estimate, in the table's order.
        dims: dimensions of one image.
        seconds: wall time of the whole evaluation.
        main: made on rank 0 (the whole result) or on another rank (its shared parts).
    """

    meta: dict[str, Any]
    estimates: dict[str, Estimate] = field(default_factory=dict)
    dims: int = 1
    seconds: float = 0.0
    main: bool = True

    @property
    def num_images(self) -> int | None:
        """The n of the first estimate that has one: the images the log-likelihoods are over."""
        return next((e.n for e in self.estimates.values() if e.n is not None), None)

    def to_json(self) -> dict[str, Any]:
        """eval.json: the meta, num_images, each estimate's block under its name, seconds and versions."""
        out = dict(self.meta)
        if self.num_images is not None:
            out["num_images"] = self.num_images
        for name, est in self.estimates.items():
            out[name] = ESTIMATORS[name].block(est, self.dims)
        out["seconds"] = self.seconds
        if self.main:
            out["versions"] = {"torch": torch.__version__}
        return out


def evaluate(
    run: Run, data: Prepared | None = None, *, settings: EvalSettings | None = None, **options: Any
) -> dict:
    """Evaluate a run folder, checkpoint or model on a split; returns what `vaelab eval` writes to eval.json.

    IS with `importance` proposals always; AIS with `ais` steps and `chains` chains if ais > 0; BDMC on `bdmc`
    simulated data if bdmc > 0 (with T = ais, or 500); the ELBO decomposition if asked; the PSIS k-hat of
    the importance weights (K >= 21); the classification error of models with a classifier q(y|x) (M2). A
    model with an exact likelihood (PixelCNN) gets its exact log p(x) instead of IS; a model with a decoder
    but no encoder (GAN) gets AIS only. With `quality` N, the Fréchet distance, precision and recall of N
    samples against N images of the split (`vaelab.evaluate.quality`).

    Under torchrun (or `vaelab eval --nproc N`) IS, AIS, BDMC and exact log p(x) are shared among the ranks
    in blocks of data that draw from their own seeds (`vaelab.evaluate.blocks`), so every datum gets the
    estimate one process gives it; rank 0 adds the rest (classification, decomposition, quality) and its
    dict is the whole result.

    Args:
        run: a run folder, a checkpoint file, or a model (then `data` is required).
        data: the split to evaluate (default: the run's `split`, drawn as the trainer evaluated it).
        settings: an `EvalSettings`; keywords given as well override its values.
        **options: any `EvalSettings` field by name: importance, ais, chains, leapfrog, schedule, bdmc,
            decomposition, limit, seed, device, data_dir, which, progress, quality, dist_timeout, split.
    """
    settings = settings or EvalSettings()
    if options:
        settings = settings.replace(**options)
    return run_evaluation(run, data, settings).to_json()


evaluate.__signature__ = inspect.Signature(  # help() and IDEs list every keyword, from the one table
    [
        inspect.Parameter("run", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="Run"),
        inspect.Parameter("data", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
        inspect.Parameter("settings", inspect.Parameter.KEYWORD_ONLY, default=None),
        *(
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
            for f in fields(EvalSettings)
        ),
    ],
    return_annotation="dict",
)


def run_evaluation(run: Run, data: Prepared | None, settings: EvalSettings) -> Evaluation:
    """Evaluate as `evaluate` does, and return the Estimates themselves (what `vaelab eval` prints).

    Args:
        run: a run folder, a checkpoint file, or a model (then `data` is required).
        data: the split to evaluate, or None for the run's own.
        settings: the evaluation's settings.
    """
    if data is not None and not isinstance(data, Prepared):
        raise ConfigError(
            f"evaluate's data must be a Prepared split (vaelab.data.prepare_split(cfg.data, 'test')), not "
            f"{type(data).__name__}: it carries the images' shape and binarization, which a bare tensor does not"
        )
    keep_freed_memory()
    w = distributed.world()
    dev = distributed.device_for(settings.device, w)
    with distributed.session(dev, settings.dist_timeout):
        return _run(run, data, settings, dev, w)


def _open(run: Run, data: Prepared | None, s: EvalSettings, dev: torch.device, meta: dict) -> tuple:
    """(model, data, config): the model on `dev` in eval mode, the split, the run's config (None for a model)."""
    if isinstance(run, nn.Module):
        if data is None:
            raise ConfigError("evaluate(model) needs the data to evaluate on (a Prepared split)")
        return run.to(dev).eval(), data, None
    path = resolve_checkpoint(run, s.which)
    ck = read_checkpoint(path)
    cfg: Config = config_of(ck, path)
    if s.data_dir is not None:
        cfg = cfg.replace(**{"data.data_dir": s.data_dir})
    model = model_from_checkpoint(ck, path).to(dev).eval()
    if data is None:
        data = prepare_split(cfg.data, s.split, dev)
    if data.shape != tuple(ck["shape"]):
        raise DataError(
            f"{cfg.data.name} images are {data.shape}, the model was built for {tuple(ck['shape'])}"
        )
    meta.update(
        run=str(run),
        checkpoint=str(path),
        model=cfg.model.name,
        data=cfg.data.name,
        binarize=cfg.data.binarize,
        binarize_seed=cfg.data.binarize_seed + SPLIT_SEED_OFFSET.get(s.split, 0),
        epoch=ck.get("epoch"),
    )
    return model, data, cfg


def _run(
    run: Run, data: Prepared | None, s: EvalSettings, dev: torch.device, w: distributed.World
) -> Evaluation:
    started = time.perf_counter()
    meta: dict[str, Any] = {"split": s.split, "seed": s.seed, "device": str(dev)}
    if w.distributed:
        meta["processes"] = w.size
    model, data, cfg = _open(run, data, s, dev, meta)
    n = len(data) if s.limit is None else min(s.limit, len(data))
    if w.size > n:
        raise ConfigError(
            f"{w.size} processes but only {n} {s.split} image(s) to evaluate; use at most {n} processes"
        )
    caps = capabilities(model)
    dims = datum_dims(data)  # a table's: its columns
    ctx = Context(model, caps, s, data, n, dims, dev, cfg)
    active = [e for e in table() if e.applies(caps, s)]
    for e in active:  # every refusal before any work
        if e.refuse is not None:
            e.refuse(ctx)
    if not caps.exact_likelihood and not caps.importance:
        meta["likelihood"] = f"none: {ctx.model_name} defines no p(x)" + (
            f"; AIS scores its {model.describe_observation()}" if caps.observation else ""
        )
    for e in _in_order([e for e in active if e.every_rank or w.main]):
        if all(need in ctx.estimates for need in e.needs):
            out = e.run(ctx)
            for est in (out,) if isinstance(out, Estimate) else out or ():
                ctx.estimates[est.name] = est
    ordered = {e.name: ctx.estimates[e.name] for e in table() if e.name in ctx.estimates}
    return Evaluation(meta, ordered, dims, time.perf_counter() - started, w.main)


def _in_order(active: list[Estimator]) -> list[Estimator]:
    """The table's order, except that an estimator comes after those it needs (when they run at all)."""
    names = {e.name for e in active}
    done: set[str] = set()
    out: list[Estimator] = []
    pending = list(active)
    while pending:
        ready = next((e for e in pending if all(n in done or n not in names for n in e.needs)), None)
        if ready is None:
            raise ConfigError(f"estimators {', '.join(e.name for e in pending)} need each other")
        pending.remove(ready)
        done.add(ready.name)
        out.append(ready)
    return out
