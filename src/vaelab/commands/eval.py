"""`vaelab eval RUN`: ELBO, importance-sampled (or exact) log p(x), PSIS k-hat, AIS, BDMC, the ELBO
decomposition and sample quality, into eval.json.

The flags are the shared run options (`add_run_options`) and one per `EvalSettings` field (its metadata holds
the flag, metavar and help), plus this command's own --out, --nproc and --threads. The printed table is made
from the Estimates: each estimator's registration gives its row and its lines. The EvalSettings flags are
added when `vaelab eval` is used (`common.defer`): the settings module imports torch, `vaelab --help` does not.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.commands.common import add_run_options, add_shared_options, defer, done
from vaelab.errors import ConfigError, VaelabError
from vaelab.io import atomic_write_json, check_can_create
from vaelab.runs import RunDir

if TYPE_CHECKING:
    from vaelab.evaluate.run import Evaluation
    from vaelab.evaluate.settings import EvalSettings


def _row(name: str, est: float, se: float, bpd: float | None, settings: str) -> str:
    bpd_text = f"{bpd:9.4f}" if bpd is not None else " " * 9
    return f"{name:<22}{est:>11.2f}{se:>9.2f}{-est:>11.2f}{bpd_text}   {settings}"


def format_table(ev: Evaluation) -> str:
    """The human-readable summary printed by `vaelab eval`: a row per log-likelihood, then each estimator's lines.

    Args:
        ev: the evaluation (its Estimates and what they were of).
    """
    from vaelab.evaluate.estimators import ESTIMATORS, bits_per_dim

    r = ev.meta
    lines = [
        f"{r.get('run', 'model')}: {r.get('data', '?')} {r['split']} split, {ev.num_images} images, seed {r['seed']}"
        + (
            f", binarized by one fixed draw (seed {r['binarize_seed']})"
            if r.get("binarize") in ("dynamic", "static")
            else ""
        ),
        f"{'estimate':<22}{'log p(x)':>11}{'stderr':>9}{'NLL':>11}{'bits/dim':>9}   settings (nats per image)",
    ]
    if "likelihood" in r:
        lines.append(f"likelihood: {r['likelihood']}")
    for est in ev.estimates.values():
        reg = ESTIMATORS[est.name]
        if reg.label is not None and est.log_px is not None:
            detail = reg.row(est) if reg.row is not None else ""
            bpd = bits_per_dim(-est.log_px, ev.dims)
            lines.append(_row(reg.label, est.log_px, est.stderr, bpd, detail))
    for est in ev.estimates.values():
        reg = ESTIMATORS[est.name]
        if reg.notes is not None:
            lines += reg.notes(est, r)
    procs = f" over {r['processes']} processes" if r.get("processes", 1) > 1 else ""
    lines.append(f"time {ev.seconds:.1f} s{procs}")
    return "\n".join(lines)


def settings_from(args: argparse.Namespace) -> EvalSettings:
    """The EvalSettings the parsed flags ask for (checked once, here).

    Args:
        args: the parsed command line of `vaelab eval`.
    """
    from vaelab.evaluate.settings import EvalSettings, flags

    given = vars(args)
    values = {}
    for name, _, flag, _ in flags():
        values[name] = not given[flag.dest] if flag.negated else given[flag.dest]
    return EvalSettings(**values)


def run(args: argparse.Namespace) -> int:
    """`vaelab eval`: evaluate, print the table, write eval.json (or start --nproc ranks that do).

    Args:
        args: the parsed command line.
    """
    import torch

    from vaelab.evaluate.run import run_evaluation
    from vaelab.train import distributed

    given = vars(args)
    nproc, threads = given.get("nproc"), given.get("threads")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    settings = settings_from(args)
    out = _checked_out(args)  # before hours of evaluation, not after
    if nproc is not None and nproc != 1:
        if distributed.world().distributed:
            raise ConfigError("--nproc starts its own processes; under torchrun leave it out")
        if nproc < 1:
            raise ConfigError(f"--nproc must be >= 1, got {nproc}")
        rank_args = argparse.Namespace(**{**given, "nproc": None})
        distributed.launch(nproc, run, (rank_args,), threads=threads)
        return 0
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        evaluation = run_evaluation(args.run, None, settings)
    finally:
        torch.set_num_threads(saved)
    if not distributed.world().main:
        return 0
    print(format_table(evaluation))
    done(atomic_write_json(out or _out_path(args), evaluation.to_json()))
    return 0


def _out_path(args: argparse.Namespace) -> Path:
    """Where eval.json goes: --out, else RUN/eval.json, else beside the checkpoint file (CKPT.eval.json)."""
    if args.out:
        return Path(args.out)
    return RunDir.at(args.run).eval if Path(args.run).is_dir() else Path(args.run).with_suffix(".eval.json")


def _checked_out(args: argparse.Namespace) -> Path | None:
    """The output file, refused now if it could not be written later (a folder in its place, a folder that
    cannot be written); None, unchecked, for the default place of a RUN that is not there (an empty path, a
    typo), which the evaluation refuses in its own words."""
    if not args.out and not (str(args.run).strip() and Path(args.run).exists()):
        return None
    out = _out_path(args)
    if out.is_dir():
        hint = " (--out takes the JSON file's path)" if args.out else ""
        raise VaelabError(f"cannot write {out}: it is a folder{hint}")
    check_can_create(out.parent)
    return out


def _settings_flags(p: argparse.ArgumentParser) -> None:
    """One flag per EvalSettings field that is not a shared run option."""
    from vaelab.evaluate.settings import flags

    for _, default, flag, kind in flags():
        if flag.shared:
            continue
        if kind is bool:
            p.add_argument(flag.flag, action="store_true", help=flag.help)
        else:
            extra = {"type": kind} if kind is not str else {}
            if flag.metavar is not None:
                extra["metavar"] = flag.metavar
            if flag.choices is not None:
                extra["choices"] = flag.choices
            p.add_argument(flag.flag, default=default, help=flag.help, **extra)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `vaelab eval` to the command line: the shared run options, one flag per EvalSettings field, and
    --out, --nproc and --threads.

    Args:
        sub: the subcommands of `vaelab`.
    """
    p = sub.add_parser(
        "eval",
        help="ELBO, importance sampling (or exact log p(x)), AIS, BDMC, decomposition, sample quality -> RUN/eval.json",
    )
    add_run_options(p)
    p.add_argument("--out", default=None, help="JSON file (default RUN/eval.json)")
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="share IS, AIS and BDMC among N local processes (same per-image numbers as one); several "
        "nodes: torchrun -m vaelab eval",
    )
    add_shared_options(p, "threads", threads="torch threads per process (default: cores / processes)")
    defer(p, _settings_flags)  # --importance, --ais, ..., --seed, --quiet
    p.set_defaults(func=run)
