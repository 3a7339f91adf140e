"""Starting, refusing and resuming a run folder, and the state a resume restores to the same bits.

A folder that holds a trained run is continued (`resume`) or started again (`overwrite`), never overwritten
by accident. A resumed run trains the checkpoint's own config: only `RESUMABLE_CHANGES` may differ from it.
The checkpoint carries the model, the optimiser, the scheduler and every random generator's state, so a
stopped run continued on the CPU ends bit for bit where the uninterrupted run ends.
"""

from __future__ import annotations

from typing import Any

import torch

from vaelab.config import Config
from vaelab.errors import ConfigError
from vaelab.runs import RunDir
from vaelab.train.checkpoint import config_of, read_checkpoint
from vaelab.train.ema import raw_weights

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
    "train.log",
    "train.mlflow_uri",
    "train.log_images_every",
    "data.data_dir",
)


def resume_config(requested: Config, saved: Config, explicit: set[str]) -> Config:
    """The saved config, with only the explicitly requested changes that a resume may make.

    Args:
        requested: the config the caller asked for.
        saved: the config in the checkpoint.
        explicit: the dotted keys the caller set on purpose (flags, --set, --config); the rest are defaults.
    """
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


def check_start(resume: bool, overwrite: bool) -> None:
    """Refuse asking to continue a run and to start it again at once.

    Args:
        resume: continue the run from its last checkpoint (--resume).
        overwrite: start it again (--overwrite).
    """
    if resume and overwrite:
        raise ConfigError(
            "--resume continues the run and --overwrite starts it again: pass one of them, not both"
        )


def open_run(
    run: RunDir | None, config: Config, resume: bool, overwrite: bool, explicit: set[str] | None
) -> tuple[dict[str, Any] | None, Config]:
    """The checkpoint to continue (None for a fresh start) and the config to train.

    Args:
        run: the run folder, or None for a run without files.
        config: the config asked for.
        resume: continue the run in `run` from its last checkpoint.
        overwrite: start again in a folder that already holds a run.
        explicit: on resume, the dotted keys the caller set on purpose (see `resume_config`).
    """
    check_start(resume, overwrite)
    if run is not None and not resume and not overwrite and run.last.is_file():
        raise ConfigError(
            f"{run.root} already holds a trained run ({run.last}); pass --resume to continue it, "
            "--overwrite to start again, or another --out"
        )
    if not resume:
        return None, config
    if run is None:
        raise ConfigError("resume needs the run folder (--out RUN)")
    if not run.last.is_file():
        raise ConfigError(f"--resume: no checkpoint at {run.last}")
    ckpt = read_checkpoint(run.last)
    return ckpt, resume_config(config, config_of(ckpt, run.last), explicit or set())


def rng_state(g_perm: torch.Generator, g_noise: torch.Generator) -> dict[str, Any]:
    """Every random state a run draws from: torch's global, the data order's and the noise's generators.

    Args:
        g_perm: the generator of each epoch's permutation.
        g_noise: the generator of the binarization and the objective's noise.
    """
    state = {"torch": torch.get_rng_state(), "perm": g_perm.get_state(), "noise": g_noise.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], g_perm: torch.Generator, g_noise: torch.Generator) -> None:
    """Put back what `rng_state` saved.

    Args:
        state: `rng_state`'s dict, from a checkpoint.
        g_perm: the generator of each epoch's permutation.
        g_noise: the generator of the binarization and the objective's noise.
    """
    torch.set_rng_state(state["torch"])
    g_perm.set_state(state["perm"])
    g_noise.set_state(state["noise"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def restore(
    ckpt: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    g_perm: torch.Generator,
    g_noise: torch.Generator,
) -> tuple[int, int, list[dict[str, Any]], float]:
    """Load a checkpoint into a freshly built run; returns its (epoch, step, history, best score).

    A schedule in closed form (LambdaLR) sets the resumed epoch's rate under this config's epochs, so an
    extended cosine schedule follows the new curve.

    Args:
        ckpt: the checkpoint (`read_checkpoint`).
        model: the model, built from the checkpoint's config.
        optimizer: its optimiser.
        scheduler: its learning-rate schedule.
        g_perm: the generator of each epoch's permutation.
        g_noise: the generator of the binarization and the objective's noise.
    """
    model.load_state_dict(raw_weights(ckpt))  # with --ema, "model" holds the average (vaelab.train.ema)
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):  # closed form: the resumed epoch's rate
        for group, base, rate in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base * rate(scheduler.last_epoch)  # under this config's epochs
    set_rng_state(ckpt["rng"], g_perm, g_noise)
    return ckpt["epoch"], ckpt["step"], list(ckpt["history"]), ckpt["best"]
