"""Speedrun records: the shortest training time on this machine that reaches a published test NLL.

Each record is a config file, `configs/speedrun-<record>.yaml` (picked on the validation split alone), a target
and a budget. A record run trains that config (`vaelab.train`, whole epochs, stopped if the next epoch would
overrun the budget), timing every epoch from the first step (per-epoch validation included); at moments spaced
geometrically over the budget it keeps a snapshot of the weights. Then it scores: the snapshots on the first
--curve-images test images (IS, K = --curve-importance), the curve of test NLL against time; and once, the
checkpoint chosen on validation (best.pt) on all 10,000 dynamically binarized test images (one fixed draw),
IS with K = 5000 through `vaelab eval`, with its standard error and the PSIS k-hat share. The record's time
is the wall clock from the first step to the end of the epoch that wrote that checkpoint.

Every phase resumes: training from the run folder, scoring from `speedrun-state.json` in it. Each record is
merged into `benchmarks/results/speedrun.json` (under a lock; --commit-results commits it) with its command,
commit, CPU, threads and load average; a record not reached stays in the table with its curve.

    python benchmarks/speedrun.py mnist-1layer-15min --data-dir ../shared/data
    python benchmarks/speedrun.py --list                  # the records, targets and budgets
    python benchmarks/speedrun.py --table                 # the table and figure from the results file
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Record:
    """A line of the records table: the config that attempts it, its target (nats) and budget (minutes)."""

    rule: str
    target: float
    budget_minutes: float
    reference: str
    strict: bool = False  # the target is "<" rather than "<="

    @property
    def config(self) -> Path:
        return ROOT / "configs" / f"speedrun-{self.name}.yaml"

    name: str = ""


def _records(*rows: Record) -> dict[str, Record]:
    return {r.name: r for r in rows}


RECORDS = _records(
    Record("one stochastic layer, N(0, I) prior", 86.76, 15, "Burda et al. 2016, VAE, 3,280 epochs",
           name="mnist-1layer-15min"),
    Record("one stochastic layer, N(0, I) prior", 84.45, 60, "Norouzi et al. 2020, gated VAE",
           name="mnist-1layer-60min"),
    Record("two stochastic layers", 83.5, 120, "Burda et al. 2016, IWAE 2 layers 82.90",
           name="mnist-2layer-2h"),
    Record("any vaelab model", 82.0, 240, "", name="mnist-any-4h"),
    Record("any vaelab model (moonshot)", 80.0, 480, "", strict=True, name="mnist-any-8h"),
    Record("VampPrior, Fashion-MNIST", 227.35, 240, "Norouzi et al. 2020, VampPrior",
           name="fashion-vampprior"),
)  # fmt: skip
RESULT_FILE = RESULTS / "speedrun.json"
STATE = "speedrun-state.json"
QUICK = {"budget_minutes": 0.1, "max_epochs": 2, "train_limit": 500, "curve_images": 20, "curve_importance": 10,
         "images": 50, "importance": 50}  # fmt: skip


def marks(budget_s: float, count: int) -> list[float]:
    """`count` moments doubling up to the budget: budget / 2^(count-1), ..., budget / 2, budget."""
    return [budget_s / 2 ** (count - 1 - i) for i in range(count)]


def reached(rec: Record, nll: float) -> bool:
    """Whether a test NLL meets the record's target."""
    return nll < rec.target if rec.strict else nll <= rec.target


def read_state(run: Path) -> dict[str, Any]:
    try:
        return json.loads((run / STATE).read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, body: dict[str, Any]) -> None:
    """Write `body` to `path` through a temporary name (never half-written): vaelab's own atomic writer."""
    from vaelab.io import atomic_write_json

    atomic_write_json(path, body)


def config_for(rec: Record, a: argparse.Namespace):
    """The record's config file with this run's data folder, threads and seed (and --set overrides)."""
    from vaelab.config import build_config, parse_assignments
    from vaelab.models.registry import model_config

    flat: dict[str, Any] = {
        "data.data_dir": a.data_dir,
        "train.threads": a.threads,
        "train.progress": False,
        "train.seed": a.seed,
        "train.device": a.device,
    }
    if a.quick:
        flat.update({"data.train_limit": QUICK["train_limit"], "train.epochs": QUICK["max_epochs"]})
    flat.update(parse_assignments(a.set or []))
    cfg = build_config(rec.config, flat)
    return build_config(rec.config, flat, base=model_config(cfg.model.name))


def train_record(rec: Record, cfg, run: Path, a: argparse.Namespace) -> dict[str, Any]:
    """Train in whole epochs until the config's epochs or the budget; each epoch's wall clock (from the first
    step, over resumed parts) and CPU time go to the run's state; snapshots at the budget's marks."""
    from vaelab.train import train

    state = read_state(run)
    if state.get("trained"):
        return state
    state.setdefault("train_command", command_line())
    state.setdefault("trained_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    state.setdefault("train_commit", git_commit())
    epochs: list[dict[str, Any]] = state.get("epochs", [])
    # each resumed part's commit and first epoch: a long record may cross a change of the code
    part = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git_commit(),
        "from_epoch": len(epochs) + 1,
    }
    state["parts"] = [*state.get("parts", []), part]
    minutes = a.budget_minutes or (QUICK["budget_minutes"] if a.quick else rec.budget_minutes)
    budget = minutes * 60
    done_wall = epochs[-1]["wall"] if epochs else 0.0
    done_cpu = epochs[-1]["cpu"] if epochs else 0.0
    todo = marks(budget, a.snapshots)
    snaps = run / "snapshots"
    t0, c0 = time.perf_counter(), time.process_time()
    last = [t0]

    def on_epoch(record: dict[str, Any]) -> bool:
        now = time.perf_counter()
        wall = done_wall + now - t0
        epochs.append(
            {
                "epoch": record["epoch"],
                "wall": wall,
                "cpu": done_cpu + time.process_time() - c0,
                "train_seconds": record["seconds"],
                "valid_elbo": record.get("valid_elbo"),
                "load": load_average()[0],
            }
        )
        due = [m for m in todo if m <= wall and not (snaps / f"{int(m)}.pt").exists()]
        if due:
            snaps.mkdir(exist_ok=True)
            shutil.copyfile(run / "checkpoints" / "last.pt", snaps / f"{int(due[-1])}.pt.tmp")
            os.replace(snaps / f"{int(due[-1])}.pt.tmp", snaps / f"{int(due[-1])}.pt")
            epochs[-1]["snapshot"] = f"snapshots/{int(due[-1])}.pt"
            for m in due[:-1]:  # a long epoch crossed two marks: the later name stands for both
                epochs[-1].setdefault("also_marks", []).append(int(m))
        write_json(run / STATE, {**state, "epochs": epochs})
        step = now - last[-1]
        last.append(now)
        return wall + step > budget

    resume = (run / "checkpoints" / "last.pt").exists()
    result = train(cfg, out=run, resume=resume, overwrite=not resume, on_epoch=on_epoch,
                   explicit={"train.epochs", "data.data_dir", "train.threads", "train.device"})  # fmt: skip
    if len(epochs) < part["from_epoch"]:  # a resume with nothing left to train is no part
        state["parts"] = state["parts"][:-1]
    if epochs and "snapshot" not in epochs[-1]:  # the end of training is always a point of the curve
        snaps.mkdir(exist_ok=True)
        name = f"end-{epochs[-1]['epoch']}.pt"
        shutil.copyfile(run / "checkpoints" / "last.pt", snaps / name)
        epochs[-1]["snapshot"] = f"snapshots/{name}"
    best = min(
        (e for e in epochs if e.get("valid_elbo") is not None),
        key=lambda e: -e["valid_elbo"],
        default=epochs[-1] if epochs else None,
    )
    state = {**state, "epochs": epochs, "trained": True, "budget_s": budget,
             "best_epoch": best["epoch"] if best else None, "history_epochs": len(result.history)}  # fmt: skip
    write_json(run / STATE, state)
    return state


def score_curve(run: Path, state: dict[str, Any], a: argparse.Namespace) -> list[dict[str, Any]]:
    """IS test NLL of every snapshot on the first --curve-images test images (state-cached)."""
    from vaelab import evaluate

    curve = state.setdefault("curve", {})
    for e in state["epochs"]:
        snap = e.get("snapshot")
        if snap is None or snap in curve:
            continue
        r = evaluate(run / snap, importance=a.curve_importance, limit=a.curve_images, seed=0,
                     data_dir=a.data_dir, progress=False)  # fmt: skip
        i = r["importance"]
        curve[snap] = {"epoch": e["epoch"], "minutes": e["wall"] / 60, "nll": i["nll"], "stderr": i["stderr"],
                       "images": i["num_images"], "K": i["num_samples"]}  # fmt: skip
        write_json(run / STATE, state)
        print(f"  curve: {e['wall'] / 60:.1f} min, epoch {e['epoch']}: test NLL {i['nll']:.2f}", flush=True)
    return sorted(curve.values(), key=lambda p: p["minutes"])


def score_final(run: Path, state: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    """best.pt on the whole test set: IS with K = --importance through `vaelab eval` (state-cached)."""
    if "final" in state:
        return state["final"]
    out = run / "speedrun-eval.json"
    cmd = [sys.executable, "-m", "vaelab", "eval", str(run), "--checkpoint", "best", "--importance",
           str(a.importance), "--threads", str(a.eval_threads), "--nproc", str(a.eval_nproc), "--seed", "0",
           "--data-dir", a.data_dir, "--quiet", "--out", str(out)]  # fmt: skip
    if a.images:
        cmd += ["--limit", str(a.images)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    r = json.loads(out.read_text())
    i, p = r["importance"], r.get("psis", {})
    state["final"] = {
        "nll": i["nll"],
        "stderr": i["stderr"],
        "K": i["num_samples"],
        "images": i["num_images"],
        "elbo": r["elbo"]["estimate"],
        "psis_share_above_0.7": p.get("share_above_threshold"),
        "psis_k_hat_mean": p.get("k_hat_mean"),
        "epoch": r["epoch"],
        "eval_seconds": time.perf_counter() - t,
        "eval_command": " ".join(cmd[1:]),
    }
    write_json(run / STATE, state)
    return state["final"]


def candidates(run: Path, name: str) -> dict[str, Any]:
    """The validation ELBO of every trained run of this record beside `run` (--tag): how its recipe was picked."""
    out = {}
    for folder in sorted(run.parent.glob(f"{name}*")):
        s = read_state(folder)
        scored = [e for e in s.get("epochs", []) if e.get("valid_elbo") is not None]
        if s.get("trained") and scored and not folder.name.endswith(("-quick", "-rerun")):
            best = max(scored, key=lambda e: e["valid_elbo"])
            out[folder.name] = {"best_valid_elbo": best["valid_elbo"], "epoch": best["epoch"],
                                "command": s.get("train_command")}  # fmt: skip
    return out


def entry(
    rec: Record, cfg, state: dict[str, Any], curve: list[dict[str, Any]], run: Path, a: argparse.Namespace
) -> dict:
    """The record's row of the results file."""
    final = state["final"]
    at = next(e for e in state["epochs"] if e["epoch"] == final["epoch"])
    return {
        "rule": rec.rule,
        "target": rec.target,
        "strict": rec.strict,
        "budget_minutes": state["budget_s"] / 60,
        "reference": rec.reference,
        "config": str(rec.config.relative_to(ROOT)),
        "model": cfg.model.name,
        "nll": final["nll"],
        "stderr": final["stderr"],
        "estimator": f"IS, K={final['K']}, {final['images']} test images (one fixed binarization)",
        "elbo": final["elbo"],
        "psis_share_above_0.7": final["psis_share_above_0.7"],
        "scored_epoch": final["epoch"],
        "epochs_trained": state["epochs"][-1]["epoch"],
        "minutes_to_scored": at["wall"] / 60,
        "cpu_minutes_to_scored": at["cpu"] / 60,
        "reached": reached(rec, final["nll"]) and at["wall"] <= state["budget_s"] + 1e-9,
        "curve": curve,
        "curve_estimator": f"IS, K={a.curve_importance}, first {a.curve_images} test images",
        "load_average_max": max(e["load"] for e in state["epochs"]),
        "threads": cfg.train.threads,
        "precision": cfg.train.precision,
        "command": state.get("train_command", command_line()),
        "run": str(run.resolve()),
        "rerun_command": f"python benchmarks/speedrun.py {rec.name} --data-dir DATA --threads {cfg.train.threads}",
        "selection": candidates(run, rec.name),
        "eval_command": final["eval_command"],
        "git_commit": git_commit(),
        "train_commit": state.get("train_commit", ""),
        "train_parts": state.get("parts", []),
        "trained_at": state.get("trained_at", ""),
        "machine": machine(cfg.train.threads),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def read_rows(path: Path) -> dict[str, Any]:
    """The records in the results file ({} when there is none)."""
    try:
        return json.loads(path.read_text()).get("records", {})
    except (OSError, ValueError):
        return {}


ATTEMPT_KEYS = ("model", "config", "nll", "stderr", "minutes_to_scored", "cpu_minutes_to_scored", "scored_epoch",
                "epochs_trained", "reached", "command", "train_commit", "trained_at", "measured_at")  # fmt: skip


def attempt(row: dict[str, Any]) -> dict[str, Any]:
    """A displaced row, kept in the record's `attempts`: its score, time, model and command (no curve)."""
    return {k: row.get(k) for k in ATTEMPT_KEYS} | {"cpu_model": row.get("machine", {}).get("cpu_model")}


def merge(name: str, row: dict[str, Any], path: Path) -> None:
    """Put one record's run into the results file (under a lock: records may run side by side). The record is
    the lower test NLL of the new run and the standing one; the other joins its `attempts`, never lost."""
    with locked(path):
        rows = read_rows(path)
        old = rows.get(name)
        if old is not None:
            kept, other = (row, old) if row["nll"] <= old["nll"] else (old, row)
            earlier = old.pop("attempts", []) + row.pop("attempts", [])
            row = {**kept, "attempts": [*earlier, attempt(other)]}
        rows[name] = row
        write_json(path, {"benchmark": "speedrun", "records": rows})


def paired_nll_difference(record_eval: Path, rerun_eval: Path) -> tuple[float, float]:
    """Mean and standard error over test images of the re-run's NLL minus the record's (same images, same draw)."""
    from reproduce_iwae import paired_difference

    a = json.loads(record_eval.read_text())["importance"]["per_datum"]
    b = json.loads(rerun_eval.read_text())["importance"]["per_datum"]
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"{rerun_eval} scored {len(b)} images, the record's {record_eval} {len(a)}")
    return paired_difference(a, b)  # log p(x) record - rerun = NLL rerun - record


def merge_rerun(name: str, row: dict[str, Any], path: Path) -> dict[str, Any]:
    """Attach a re-run's score to the record's row: does the record's command give its number again?"""
    with locked(path):
        rows = read_rows(path)
        rec = rows[name]
        diff, se = paired_nll_difference(
            Path(rec["run"]) / "speedrun-eval.json", Path(row["run"]) / "speedrun-eval.json"
        )
        rec["rerun"] = {k: row[k] for k in ("nll", "stderr", "minutes_to_scored", "reached", "scored_epoch",
                                              "run", "command", "measured_at", "load_average_max")}  # fmt: skip
        rec["rerun"].update(
            nll_minus_record=diff, paired_stderr=se, within_record_stderr=abs(diff) <= rec["stderr"]
        )
        write_json(path, {"benchmark": "speedrun", "records": rows})
        return rec["rerun"]


def rerun_cell(r: dict[str, Any] | None) -> str:
    """A re-run's NLL and its paired difference from the record, for the table."""
    if r is None:
        return ""
    return f"{r['nll']:.2f} ({r['nll_minus_record']:+.2f} ± {r['paired_stderr']:.2f})"


def best_so_far(rec: Record, rows: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """For a record that admits any vaelab model: the lowest test NLL among the other records run on its data set
    within its budget (their models qualify), so an unrun record still shows its best time-to-value so far."""
    if not rec.rule.startswith("any vaelab model"):
        return None
    data = rec.name.split("-")[0]
    runs = [(n, r) for n, r in rows.items() if n != rec.name and n.split("-")[0] == data
            and r["minutes_to_scored"] <= rec.budget_minutes]  # fmt: skip
    return min(runs, key=lambda nr: nr[1]["nll"], default=None)


def table(rows: dict[str, Any]) -> str:
    """The records table in markdown: every record, reached or not."""
    lines = [
        "| record | target (nats) | budget | vaelab test NLL (all images) | time to scored checkpoint | reached |"
        " model, epochs | k-hat > 0.7 | CPU, threads, load | re-run (paired Δ) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, rec in RECORDS.items():
        r = rows.get(name)
        op = "<" if rec.strict else "≤"
        if r is None:
            best = best_so_far(rec, rows)
            got = (
                "not run"
                if best is None
                else (
                    f"not run; best so far {best[1]['nll']:.2f} ± {best[1]['stderr']:.2f} ({best[0]}) | "
                    f"{best[1]['minutes_to_scored']:.1f} min"
                )
            )
            lines.append(f"| {name}: {rec.rule} | {op} {rec.target} | {rec.budget_minutes:g} min | {got} | "
                         f"{'' if best else '| '}no | | | | |")  # fmt: skip
            continue
        share = r.get("psis_share_above_0.7")
        lines.append(
            f"| {name}: {rec.rule} | {op} {rec.target} | {r['budget_minutes']:g} min | {r['nll']:.2f} ± "
            f"{r['stderr']:.2f} | {r['minutes_to_scored']:.1f} min ({r['cpu_minutes_to_scored']:.1f} CPU min) | "
            f"{'**yes**' if r['reached'] else 'no'} | {r['model']}, {r['scored_epoch']} of {r['epochs_trained']} | "
            f"{'' if share is None else f'{100 * share:.2f}%'} | {r['machine']['cpu_model']}, {r['threads']}, "
            f"{r['load_average_max']:.1f} | {rerun_cell(r.get('rerun'))} |"
        )
    lines += ["", "| record | training started | commit | command (training; scored by `vaelab eval` as in the results file) |",
              "| --- | --- | --- | --- |"]  # fmt: skip
    for name, r in rows.items():
        when, commit = r.get("trained_at") or r["measured_at"], r.get("train_commit") or r["git_commit"]
        lines.append(f"| {name} | {when} | {commit[:7]} | `{r['command']}` |")
    tried = [(name, t) for name, r in rows.items() for t in r.get("attempts", [])]
    if tried:
        lines += ["", "| record | other attempt (not the record) | model, epochs | time | trained | command |",
                  "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for name, t in tried:
            lines.append(f"| {name} | {t['nll']:.2f} ± {t['stderr']:.2f} | {t['model']}, {t['scored_epoch']} of "
                         f"{t['epochs_trained']} | {t['minutes_to_scored']:.1f} min | {t['trained_at']} | "
                         f"`{t['command']}` |")  # fmt: skip
    return "\n".join(lines)


def draw(rows: dict[str, Any], path: Path) -> None:
    """Test NLL against training minutes for every record run, targets dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, r) in enumerate(sorted(rows.items())):
        pts = r["curve"]
        ax.errorbar([p["minutes"] for p in pts], [p["nll"] for p in pts], yerr=[p["stderr"] for p in pts],
                    marker="o", color=f"C{i}", capsize=2, label=f"{name} ({r['curve_estimator']})")  # fmt: skip
        ax.plot(
            [r["minutes_to_scored"]],
            [r["nll"]],
            "*",
            ms=12,
            color=f"C{i}",
            label=f"{name}: scored, all images",
        )
        ax.axhline(r["target"], color=f"C{i}", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("training wall clock from the first step (minutes)")
    ax.set_ylabel("test NLL (nats per image)")
    ax.set_title("vaelab speedrun records (dashed: targets)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    from vaelab.io import atomic_save

    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


def run_record(name: str, a: argparse.Namespace) -> dict[str, Any]:
    """Train, score and merge one record (each phase resumes)."""
    import torch

    rec = RECORDS[name]
    torch.set_num_threads(a.threads)
    cfg = config_for(rec, a)
    if a.rerun and name not in read_rows(Path(a.results)):  # before any training: nothing to compare with
        raise SystemExit(f"speedrun: --rerun {name}: {a.results} holds no record {name} to compare with")
    tag = a.tag or ("rerun" if a.rerun else "")
    run = Path(a.runs_dir) / "-".join([name, *([tag] if tag else []), *(["quick"] if a.quick else [])])
    run.mkdir(parents=True, exist_ok=True)
    print(
        f"[{name}] {rec.rule}: target {rec.target} nats within {rec.budget_minutes:g} min; run {run}",
        flush=True,
    )
    state = train_record(rec, cfg, run, a)
    if a.train_only:
        best = max(
            (e for e in state["epochs"] if e.get("valid_elbo") is not None), key=lambda e: e["valid_elbo"]
        )
        print(f"[{name}] trained {run}: best validation ELBO {best['valid_elbo']:.2f} at epoch {best['epoch']}, "
              f"{best['wall'] / 60:.1f} min", flush=True)  # fmt: skip
        return state
    curve = score_curve(run, state, a)
    final = score_final(run, state, a)
    row = entry(rec, cfg, state, curve, run, a)
    if a.rerun:
        r = merge_rerun(name, row, Path(a.results))
        print(f"[{name}] re-run: test NLL {r['nll']:.2f}, {r['nll_minus_record']:+.2f} ± {r['paired_stderr']:.2f} "
              f"against the record (paired over images)", flush=True)  # fmt: skip
        return row
    merge(name, row, Path(a.results))
    print(f"[{name}] test NLL {final['nll']:.2f} ± {final['stderr']:.2f} ({row['estimator']}) at "
          f"{row['minutes_to_scored']:.1f} min: {'reached' if row['reached'] else 'not reached'}", flush=True)  # fmt: skip
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", nargs="*", help=f"records to run: {', '.join(RECORDS)}")
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--runs-dir", default=str(ROOT.parent / "runs-speed"))
    p.add_argument("--results", default=str(RESULT_FILE))
    p.add_argument("--threads", type=int, default=2, help="training threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-minutes", type=float, default=None, help="another budget than the record's")
    p.add_argument(
        "--snapshots", type=int, default=6, help="curve points spaced geometrically over the budget"
    )
    p.add_argument("--curve-importance", type=int, default=1000, metavar="K")
    p.add_argument("--curve-images", type=int, default=1000)
    p.add_argument(
        "--importance", type=int, default=5000, metavar="K", help="IS proposals for the scored number"
    )
    p.add_argument("--images", type=int, default=0, help="test images to score (0: all)")
    p.add_argument("--eval-threads", type=int, default=2)
    p.add_argument("--eval-nproc", type=int, default=1)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a config override (recorded)")
    p.add_argument(
        "--tag", default="", help="a suffix of the run folder (candidates of a record side by side)"
    )
    p.add_argument("--rerun", action="store_true", help="train the record again (folder tag 'rerun') and "
                   "store its score beside the record's, with the paired difference")  # fmt: skip
    p.add_argument("--train-only", action="store_true", help="train (resumably), score nothing: a candidate")
    p.add_argument("--commit-results", action="store_true")
    p.add_argument("--list", action="store_true", help="print the records and exit")
    p.add_argument(
        "--table", action="store_true", help="print the table and redraw the figure, train nothing"
    )
    p.add_argument("--quick", action="store_true", help="tiny data, budget and scoring: a minute")
    a = p.parse_args(argv)
    unknown = [r for r in a.records if r not in RECORDS]
    if unknown:
        p.error(f"unknown record {unknown[0]!r}; records: {', '.join(RECORDS)}")
    if a.list:
        for name, rec in RECORDS.items():
            print(f"{name}: {rec.rule}, {'<' if rec.strict else '<='} {rec.target} nats in "
                  f"{rec.budget_minutes:g} min ({rec.config.relative_to(ROOT)})")  # fmt: skip
        return 0
    if a.quick:
        a.curve_images, a.curve_importance = QUICK["curve_images"], QUICK["curve_importance"]
        a.images, a.importance = QUICK["images"], QUICK["importance"]
        a.snapshots = min(a.snapshots, 2)
    if not a.table and not a.records:
        p.error("name a record to run (--list shows them), or --table")
    for name in a.records:
        run_record(name, a)
    path = Path(a.results)
    if path.is_file():
        rows = read_rows(path)
        print(table(rows))
        if rows:
            draw(rows, path.with_suffix(".png"))
        if a.commit_results and a.records:
            commit_files([path, path.with_suffix(".png")], f"speedrun: {', '.join(a.records)} measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
