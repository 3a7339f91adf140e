"""What a flow buys, measured (issue #20, part 5): the same VAE with q(z|x) a diagonal Gaussian, planar:8 and
iaf:2, trained for the same wall-clock budget on dynamically binarized MNIST and Fashion-MNIST, and scored on
the test set by importance sampling.

Every cell (data set x posterior) trains one model: families.py's "vae-gated" (2x300 gated MLP, 40-d latent,
Adam 5e-4, batch 100) with a KL warm-up of --warmup epochs, a 10% validation split, --threads and
--precision (training only: evaluation is fp32), in whole epochs until the next one, as long as the last,
would overrun --budget-minutes. A flow's KL is a Monte Carlo term (objective.kl=mc); the Gaussian keeps its
closed form. The scored checkpoint is best.pt (the trainer's choice by validation ELBO; nothing is chosen on
the test set), evaluated on --eval-images test images (0: all) with K = --importance proposals: test NLL =
-IS log p(x), the ELBO over the same draws, their gap with its standard error over images, and the share of
images whose PSIS k-hat is above 0.7.

Each cell is a run folder in --runs-dir; its entry is merged into the results file as soon as it is scored
(under a lock: two processes may share the file; --commit-results git-commits that file alone). A re-run
skips a cell already scored with the same settings (--force: train it again), and resumes an interrupted
training from its folder (the budget counts the wall time of the epochs it finished).

    python benchmarks/posteriors.py --data-dir ../shared/data                    # 2 x 3 cells, 10 min each
    python benchmarks/posteriors.py --data mnist --posteriors planar:8 --commit-results
    python benchmarks/posteriors.py --table                                      # the table, no training
    python benchmarks/posteriors.py --quick       # under a minute, tiny data; results in a temporary folder
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import (  # noqa: E402
    RESULTS,
    ROOT,
    command_line,
    commit_files,
    default_data_dir,
    git_commit,
    load_average,
    locked,
    machine,
)
from families import config_for  # noqa: E402
from semi_supervised import read_cells  # noqa: E402

RESULTS_FILE = RESULTS / "posteriors.json"
QUICK_DIR = Path(tempfile.gettempdir()) / "vaelab-posteriors-quick"
QUICK = {"train_limit": 1000, "eval_images": 100, "importance": 50, "budget_minutes": 0.1, "max_epochs": 2}
KHAT = 0.7  # PSIS: above it an image's importance-sampled log p(x) is not to be trusted
STATE = "budget.json"  # in each run folder: the budget's wall and CPU seconds spent so far
NOTES = [
    "test NLL = -IS log p(x) with K proposals from q(z|x), ± its standard error over images; ELBO over the same "
    "K draws (the mean log-weight).",
    "gap = IS log p(x) - ELBO, image by image, ± its standard error over images: an estimate of "
    "KL(q(z|x) || p(z|x)) that falls short of it by the IS bound's own slack (log p(x) - IS log p(x) >= 0 in "
    "expectation), so it is a lower estimate. Each gap is its own model's: the decoders differ too.",
    f"k-hat: the share of test images whose PSIS k-hat of the importance weights is above {KHAT} "
    "(their IS estimate, and their gap, are unreliable).",
    "Scored: best.pt, the epoch with the best validation ELBO. s/epoch: median of the epochs' training "
    "seconds (optimiser steps only); the budget counts whole epochs with their per-epoch evaluations.",
    "Training: gaussian with the closed-form KL, flows with a Monte Carlo KL (a flow's has no closed form).",
]


def posterior_order(p: str) -> tuple[int, str]:
    """Gaussian first, then planar, then IAF (then anything else), for the table."""
    kind = p.split(":", 1)[0]
    return ({"gaussian": 0, "planar": 1, "iaf": 2}.get(kind, 3), p)


def settings_of(a: argparse.Namespace) -> dict[str, Any]:
    """What makes two runs of a cell the same measurement: a re-run with equal settings skips the cell."""
    keys = ("budget_minutes", "importance", "eval_images", "warmup", "seed", "precision", "max_epochs")
    return {"quick": a.quick, "train_limit": a.train_limit, **{k: getattr(a, k) for k in keys}}


def cell_config(data: str, posterior: str, a: argparse.Namespace):
    """families.py's vae-gated config on `data` with this benchmark's warm-up, validation split and posterior."""
    cfg = config_for("vae-gated", data, a)
    return cfg.replace(
        **{
            "data.data_dir": str(Path(a.data_dir).resolve()),
            "data.valid_fraction": 0.1,
            "data.train_limit": a.train_limit,
            "model.posterior": posterior,
            "objective.kl": "analytic" if posterior == "gaussian" else "mc",
            "objective.warmup_epochs": float(a.warmup),
            "train.precision": a.precision,
            "train.epochs": a.max_epochs,
        }
    )


def _read_state(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / STATE).read_text())
    except (OSError, ValueError):
        return {}


def _same_model(a: dict[str, Any], b: dict[str, Any] | None) -> bool:
    """Equal configs but for what a resume may change here (the epoch cap and the threads)."""

    def strip(c: dict[str, Any]) -> dict[str, Any]:
        return {**c, "train": {k: v for k, v in c["train"].items() if k not in ("epochs", "threads")}}

    return b is not None and strip(a) == strip(b)


def train_for_budget(cfg, out: Path, budget_s: float, force: bool = False) -> dict[str, Any]:
    """Whole epochs until the next, as long as the last, would overrun `budget_s` of wall time; a run of the
    same model in `out` is continued (or kept, if its budget is spent) instead of started again."""
    from vaelab.io import atomic_write_json
    from vaelab.runs import RunDir
    from vaelab.train import train

    run = RunDir.at(out)
    state = _read_state(out)
    fits = state.get("budget_spent") == budget_s or state.get("wall_seconds", math.inf) <= budget_s
    resume = not force and run.last.is_file() and _same_model(cfg.to_dict(), state.get("config")) and fits
    if not resume:
        (out / STATE).unlink(missing_ok=True)
        state = {"wall_seconds": 0.0, "cpu_seconds": 0.0, "last_epoch_wall": 0.0, "sessions": 0}
    state["config"] = cfg.to_dict()
    spent, history = state["wall_seconds"], run.read_metrics() if resume else []
    if resume and (
        state.get("budget_spent") == budget_s
        or spent + state["last_epoch_wall"] > budget_s
        or len(history) >= cfg.train.epochs
    ):
        return {**state, "history": history, "resumed": True, "trained_now": 0}
    start, cpu0 = time.perf_counter(), time.process_time()
    marks = [start]
    state.update(sessions=state["sessions"] + 1, budget_spent=None)
    cpu_before = state["cpu_seconds"]

    def on_epoch(_: dict[str, Any]) -> bool:
        marks.append(time.perf_counter())
        last = marks[-1] - marks[-2]
        state.update(wall_seconds=spent + marks[-1] - start, last_epoch_wall=last)
        state["cpu_seconds"] = cpu_before + time.process_time() - cpu0
        stop = state["wall_seconds"] + last > budget_s
        state["budget_spent"] = budget_s if stop else None  # the budget this run was stopped by
        atomic_write_json(out / STATE, state)
        return stop

    res = train(
        cfg,
        out=out,
        resume=resume,
        overwrite=not resume,
        explicit={"train.epochs", "train.threads"},
        on_epoch=on_epoch,
    )
    return {**state, "history": res.history, "resumed": resume, "trained_now": len(marks) - 1}


def evaluate_cell(out: Path, a: argparse.Namespace) -> dict[str, Any]:
    """best.pt on the test images by importance sampling: NLL, ELBO over the same draws, their gap per image."""
    from vaelab.evaluate import EvalSettings, run_evaluation
    from vaelab.evaluate.estimators import mean_and_stderr
    from vaelab.train.checkpoint import read_checkpoint, resolve_checkpoint

    s = EvalSettings(importance=a.importance, limit=a.eval_images or None, seed=a.seed, which="best")
    ev = run_evaluation(out, None, s)
    imp, elbo = ev.estimates["importance"], ev.estimates["elbo"]
    per_image = imp.result.log_px.double() - imp.result.elbo.double()
    _, gap_se = mean_and_stderr(per_image)

    def finite(v: float) -> float | None:
        return v if math.isfinite(v) else None

    psis = ev.estimates.get("psis")
    ck = read_checkpoint(resolve_checkpoint(out, "best"))
    return {
        "checkpoint": "best.pt (the best validation ELBO)",
        "best_epoch": ev.meta.get("epoch"),
        "parameters": sum(v.numel() for v in ck["model"].values()),
        "images": imp.n,
        "importance_K": a.importance,
        "log_px": {"value": imp.log_px, "stderr": finite(imp.stderr)},
        "nll": {"value": -imp.log_px, "stderr": finite(imp.stderr)},
        "elbo": {"value": elbo.log_px, "stderr": finite(elbo.stderr)},
        "gap": {
            "value": imp.log_px - elbo.log_px,
            "stderr": finite(gap_se),
            "min_per_image": float(per_image.min()),
        },
        "k_hat_share_above": psis.extras["share_above_threshold"] if psis else None,
        "k_hat_mean": finite(psis.extras["k_hat_mean"]) if psis else None,
        "eval_seconds": ev.seconds,
    }


def put_cell(path: Path, key: str, entry: dict[str, Any], a: argparse.Namespace) -> None:
    """Merge one cell into the results file (re-read under the lock), rewrite it atomically, commit it if asked."""
    from vaelab.io import atomic_write_json

    with locked(path):
        cells = read_cells(path)
        cells[key] = entry
        body = {
            "benchmark": "posteriors",
            "command": command_line(),
            "git_commit": git_commit(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine(a.threads),
            "load_average": load_average(),
            "setting": settings_of(a),
            "notes": NOTES,
            "figures": {"cells": dict(sorted(cells.items()))},
        }
        atomic_write_json(path, body)
        if a.commit_results:
            commit_files(
                [path], f"posteriors: {key} ({entry['training']['epochs']} epochs, {a.budget_minutes:g} min)"
            )


def run_cell(data: str, posterior: str, a: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) one cell for the budget, score its best.pt and merge its entry into the results."""
    key = f"{data}/{posterior}"
    out = Path(a.runs_dir) / re.sub(r"[^A-Za-z0-9._-]+", "-", f"{data}-{posterior}").strip("-")
    cfg = cell_config(data, posterior, a)
    budget = a.budget_minutes * 60
    print(f"[{key}] training for up to {a.budget_minutes:g} min (load {load_average()})", flush=True)
    t = train_for_budget(cfg, out, budget, a.force)
    history = t["history"]
    kept = " (trained earlier: its budget is spent)" if t["trained_now"] == 0 else ""
    print(
        f"[{key}] {len(history)} epoch(s) in {t['wall_seconds'] / 60:.1f} min{kept}; evaluating", flush=True
    )
    entry = {
        "data": data,
        "posterior": posterior,
        "run": str(out),
        "settings": settings_of(a),
        "config": cfg.to_dict(),
        "training": {
            "epochs": len(history),
            "seconds_per_epoch_median": statistics.median(r["seconds"] for r in history),
            "wall_seconds": t["wall_seconds"],
            "cpu_seconds": t["cpu_seconds"],
            "budget_seconds": budget,
            "sessions": t["sessions"],
            "resumed": t["resumed"],
            "curve": [
                {k: r.get(k) for k in ("epoch", "seconds", "beta", "valid_elbo", "test_elbo")}
                for r in history
            ],
        },
        "precision": cfg.train.precision,
        "threads": a.threads,
        "test": evaluate_cell(out, a),
        "load_average_after": load_average(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": git_commit(),
        "command": command_line(),
        "machine": machine(a.threads),
    }
    put_cell(a.results, key, entry, a)
    e = entry["test"]
    print(
        f"[{key}] NLL {e['nll']['value']:.2f}, ELBO {e['elbo']['value']:.2f}, gap {e['gap']['value']:.2f} "
        f"(best epoch {e['best_epoch']})",
        flush=True,
    )
    return entry


def _pm(block: dict[str, Any]) -> str:
    se = block.get("stderr")
    return f"{block['value']:.2f}" + (f" ± {se:.2f}" if se is not None else "")


def table(cells: dict[str, Any]) -> str:
    """The markdown table of every cell in the results file, and its notes."""
    head = [
        "| data | posterior | test NLL (nats) | ELBO | gap IS log p(x) - ELBO | k-hat > 0.7 | s/epoch | "
        "epochs (best) | budget (wall, CPU) | CPU, threads, precision |",
        "|" + " --- |" * 10,
    ]
    first = {"mnist": "0", "fashion-mnist": "1"}  # then the others by name
    rows = sorted(
        cells.values(), key=lambda c: (first.get(c["data"], c["data"]), posterior_order(c["posterior"]))
    )
    for c in rows:
        e, t, m = c["test"], c["training"], c.get("machine", {})
        share = e.get("k_hat_share_above")
        head.append(
            f"| {c['data']} | {c['posterior']} | {_pm(e['nll'])} | {_pm(e['elbo'])} | {_pm(e['gap'])} | "
            + ("—" if share is None else f"{100 * share:.0f}%")
            + f" | {t['seconds_per_epoch_median']:.2f} | {t['epochs']} ({e['best_epoch']}) | "
            f"{t['budget_seconds'] / 60:g} min ({t['wall_seconds'] / 60:.1f}, {t['cpu_seconds'] / 60:.1f} min) | "
            f"{m.get('cpu_model', '—')}, {c['threads']}, {c['precision']} |"
        )
    if rows:
        e = rows[0]["test"]
        head.append(f"\nK = {e['importance_K']} proposals, {e['images']} test images.")
    return "\n".join(head + [""] + [f"- {n}" for n in NOTES])


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with --quick's settings filled in and the posteriors checked (ConfigError)."""
    from vaelab.distributions.flows import parse_posterior
    from vaelab.errors import ConfigError

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="mnist,fashion-mnist", help="comma-separated data sets")
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--posteriors", default="gaussian,planar:8,iaf:2", help="comma-separated model.posterior")
    p.add_argument("--budget-minutes", type=float, default=10.0, help="training wall clock per cell")
    p.add_argument("--max-epochs", type=int, default=10_000)
    p.add_argument("--importance", type=int, default=1000, metavar="K", help="IS proposals per test image")
    p.add_argument("--eval-images", type=int, default=10_000, help="first N test images (0: all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16"), help="of training")
    p.add_argument("--warmup", type=float, default=10.0, help="KL warm-up epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs-dir", default=None, help="default: ../runs-posteriors beside the repository")
    p.add_argument("--results", type=Path, default=None, help=f"default: {RESULTS_FILE.relative_to(ROOT)}")
    p.add_argument("--force", action="store_true", help="train and score every cell again")
    p.add_argument("--table", action="store_true", help="only print the table from the results file")
    p.add_argument("--quick", action="store_true", help="tiny data and budget; results in a temporary folder")
    p.add_argument(
        "--commit-results", action="store_true", help="git-commit the results file after each cell"
    )
    p.add_argument("--train-limit", type=int, default=0, help="only the first N training images (0: all)")
    if "--quick" in (sys.argv[1:] if argv is None else argv):
        p.set_defaults(**QUICK)  # the flags given still win
    a = p.parse_args(argv)
    a.results = a.results or (QUICK_DIR / "posteriors-quick.json" if a.quick else RESULTS_FILE)
    a.runs_dir = a.runs_dir or str(QUICK_DIR / "runs" if a.quick else ROOT.parent / "runs-posteriors")
    a.data = [d.strip() for d in a.data.split(",") if d.strip()]
    a.posteriors = [q.strip() for q in a.posteriors.split(",") if q.strip()]
    for q in a.posteriors:
        try:
            parse_posterior(q)
        except ConfigError as e:
            raise ConfigError(f"--posteriors: {e}") from None
    if not a.data or not a.posteriors:
        raise ConfigError("--data and --posteriors each need at least one name")
    if (
        min(a.budget_minutes, a.importance, a.threads, a.max_epochs) <= 0
        or min(a.eval_images, a.train_limit) < 0
    ):
        raise ConfigError("--budget-minutes, --importance, --threads and --max-epochs must be positive")
    return a


def main(argv: list[str] | None = None) -> int:
    """Train and score every cell not yet in the results file (or only print the table); 1 on an error."""
    from vaelab.errors import VaelabError

    try:
        a = parse(argv)
        if not a.table:
            import torch

            torch.set_num_threads(a.threads)
            done = read_cells(a.results)
            for data in a.data:
                for posterior in a.posteriors:
                    old = done.get(f"{data}/{posterior}")
                    if not a.force and old is not None and old.get("settings") == settings_of(a):
                        print(f"[{data}/{posterior}] in {a.results} with these settings: skipped", flush=True)
                        continue
                    run_cell(data, posterior, a)
    except VaelabError as e:
        print(f"posteriors: error: {e}", file=sys.stderr)
        return 1
    print(table(read_cells(a.results)))
    print(f"results: {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
