"""Optimisers and per-epoch learning-rate schedules, as tables of factories.

`OPTIMIZERS` maps `train.optimizer` to a `torch.optim` class (Adam, Kingma & Ba 2015; Adagrad, Duchi et al.
2011, as Kingma & Welling 2014 trained); `SCHEDULES` maps `train.lr_schedule` to a factory
`(TrainConfig, optimizer) -> LRScheduler` stepped once per epoch. A new optimiser or schedule is one
registration. Schedules that are a function of the epoch are written in closed form (LambdaLR), so a resumed
run with more epochs follows the new curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import lr_scheduler as sched

from vaelab.config import TrainConfig
from vaelab.registry import Registry

OPTIMIZERS: Registry[type[torch.optim.Optimizer]] = Registry(
    "optimizer", {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad}
)

Schedule = Callable[[TrainConfig, torch.optim.Optimizer], sched.LRScheduler]
SCHEDULES: Registry[Schedule] = Registry("lr_schedule")


def iwae_lr_factor(epoch: int) -> float:
    """Burda et al. 2016: 3^i epochs at lr * 10^(-i/7) for i = 0..7 (3,280 epochs), then the last rate.

    Args:
        epoch: the 0-based epoch.
    """
    i, end = 0, 1
    while epoch >= end and i < 7:
        i += 1
        end += 3**i
    return 10.0 ** (-i / 7)


def _cosine(cfg: TrainConfig, opt: torch.optim.Optimizer) -> sched.LRScheduler:
    # closed form of the epoch, not torch's recursive CosineAnnealingLR: a resume that extends the epochs
    # then follows the new curve (the recursive form kept the old period and went back up)
    return sched.LambdaLR(
        opt, lambda e: 0.5 * (1 + math.cos(math.pi * min(e, cfg.epochs) / max(cfg.epochs, 1)))
    )


SCHEDULES.register("constant", lambda cfg, opt: sched.LambdaLR(opt, lambda _: 1.0))
SCHEDULES.register("step", lambda cfg, opt: sched.StepLR(opt, cfg.lr_step_epochs, cfg.lr_gamma))
SCHEDULES.register("exponential", lambda cfg, opt: sched.ExponentialLR(opt, cfg.lr_gamma))
SCHEDULES.register("cosine", _cosine)
SCHEDULES.register("iwae", lambda cfg, opt: sched.LambdaLR(opt, iwae_lr_factor))


def make_optimizer(cfg: TrainConfig, params: Iterable[Any]) -> torch.optim.Optimizer:
    """`cfg.optimizer` over `params`, as one fused kernel per step where the device has one, else the
    multi-tensor (foreach) form.

    Args:
        cfg: the training settings (optimizer, lr, weight_decay).
        params: the parameters, or parameter groups (dicts with their own settings).
    """
    kind = OPTIMIZERS.lookup(cfg.optimizer)
    params = list(params)
    try:
        return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer) -> sched.LRScheduler:
    """The per-epoch learning-rate schedule `cfg.lr_schedule` of `opt`.

    Args:
        cfg: the training settings (lr_schedule and its lr_step_epochs, lr_gamma, epochs).
        opt: the optimiser whose rates it moves.
    """
    return SCHEDULES.lookup(cfg.lr_schedule)(cfg, opt)
