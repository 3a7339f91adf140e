"""What a run does when its loss turns non-finite (`train.on_diverge`): stop, or restart at a lower rate.

With `restart`, training goes back to the last good checkpoint (or the start) with the learning rate times
`train.restart_lr_factor`, at most `train.max_restarts` times. The product of every restart's factor is
saved in the checkpoint (`lr_factor`), so a run resumed after a restart keeps the rate it had.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from vaelab.config import TrainConfig
from vaelab.errors import TrainingDiverged
from vaelab.registry import Registry
from vaelab.runs import RunDir
from vaelab.train.checkpoint import read_checkpoint

DIVERGE_ACTIONS: Registry[str] = Registry(
    "on_diverge action",
    {
        "stop": "stop at a non-finite loss, keeping the last good checkpoint",
        "restart": "go back to the last good checkpoint with a lower learning rate",
    },
)

R = TypeVar("R")


def saved_lr_factor(ckpt: dict[str, Any] | None) -> float:
    """The learning-rate factor of every restart before `ckpt` was written (1 for a fresh start).

    Args:
        ckpt: a checkpoint, or None.
    """
    return ckpt.get("lr_factor", 1.0) if ckpt is not None else 1.0


def with_restarts(
    attempt: Callable[[dict[str, Any] | None, float], R],
    cfg: TrainConfig,
    run: RunDir | None,
    ckpt: dict[str, Any] | None,
    main: bool = True,
) -> R:
    """`attempt(ckpt, lr_factor)`, and with on_diverge=restart, again after each TrainingDiverged from the
    last good checkpoint with the rate lowered, until it returns or the restarts run out.

    Args:
        attempt: one training attempt from a checkpoint (None: the start) at a learning-rate factor.
        cfg: the training settings (on_diverge, max_restarts, restart_lr_factor).
        run: the run folder whose last checkpoint a restart goes back to (None: the start).
        ckpt: the checkpoint the first attempt starts from.
        main: this process says what happens on stderr (rank 0).
    """
    restarts, lr_factor = 0, saved_lr_factor(ckpt)
    while True:
        try:
            return attempt(ckpt, lr_factor)
        except TrainingDiverged as e:
            if cfg.on_diverge != "restart" or restarts >= cfg.max_restarts:
                raise
            restarts += 1
            lr_factor *= cfg.restart_lr_factor
            ckpt = read_checkpoint(run.last) if run is not None and run.last.is_file() else None
            where = f"epoch {ckpt['epoch']} of {run.last}" if ckpt is not None else "the start"
            if main:
                print(
                    f"vaelab: {e}; restart {restarts} of {cfg.max_restarts} from {where} "
                    f"with the learning rate x{cfg.restart_lr_factor}",
                    file=sys.stderr,
                )


def scale_rates(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    lr_factor: float,
    ckpt: dict[str, Any] | None,
) -> None:
    """Set the rates to `lr_factor` times the schedule's, of which the checkpoint's rates hold the part they
    were written with.

    Args:
        optimizer: the optimiser, restored from `ckpt` if there is one.
        scheduler: its schedule, restored likewise.
        lr_factor: the product of every restart's factor.
        ckpt: the checkpoint the run started from, or None.
    """
    change = lr_factor / saved_lr_factor(ckpt)
    if change != 1.0:
        for group in optimizer.param_groups:
            group["lr"] *= change
        scheduler.base_lrs = [lr * change for lr in scheduler.base_lrs]
