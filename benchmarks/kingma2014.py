"""Kingma & Welling 2014 ("Auto-Encoding Variational Bayes"), figures 2 and 3, within a stated CPU budget.

Figure 2: the lower bound per datum (nats) on the training set against the number of training samples
evaluated (epochs x training images), AEVB (`objective elbo`) against wake-sleep, on MNIST (Nz = 3, 5, 10,
20, 200; configs/kingma2014-mnist.yaml: 500 tanh hidden, Bernoulli decoder, Adagrad, batches of 100) and
Frey Face (Nz = 2, 5, 10, 20; configs/kingma2014-freyface.yaml: 200 tanh hidden, Gaussian decoder). After
every epoch the trainer scores the ELBO (one draw of q per datum, analytic KL) on a fixed subset of the
training images (passed to `vaelab.train` as its validation split; for binarized MNIST a fixed Bernoulli
draw) and on the test set; the epoch's running average over its batches is kept beside it.

Figure 3: log p(x) by importance sampling (`vaelab.evaluate`, K proposals from q, with the standard error
over images) on a training subset and on test images, against samples evaluated, for AEVB, wake-sleep and
Monte Carlo EM (`objective mcem`): Nz = 3, 100 tanh hidden, MNIST training sets of 1,000 and 50,000 images
(data.train_limit), at epochs spaced geometrically up to each run's samples budget.

    python benchmarks/kingma2014.py --data-dir ../shared/data        # the default budget, about an hour
    python benchmarks/kingma2014.py --quick                           # mnist-5k subsets, under a minute

Each finished run (and each figure-3 evaluation) is merged into the results file at once, and a re-run
skips the runs it holds finished with the same settings and resumes an unfinished one from its run folder
(--runs-dir), so a killed benchmark continues where it stopped. The figure is redrawn after every run.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import RESULTS, ROOT, command_line, default_data_dir, git_commit, load_average, machine  # noqa: E402

CONFIGS = {
    "mnist": ROOT / "configs" / "kingma2014-mnist.yaml",
    "frey-face": ROOT / "configs" / "kingma2014-freyface.yaml",
}
OBJECTIVES = {"elbo": "AEVB", "wake-sleep": "wake-sleep", "mcem": "MCEM"}
# What the paper reports (figures 2 and 3 and their text); it gives curves, not tables of numbers.
PAPER = {
    "figure 2": "caption: AEVB converged considerably faster and reached a better solution than wake-sleep in "
    "all experiments; more latent variables did not bring more overfitting (the bound regularises); about "
    "20-40 minutes per million training samples on an Intel Xeon at an effective 40 GFLOPS; x-axis to ~1e8",
    "figure 3 (as issue #18 describes it)": "AEVB above wake-sleep and MCEM in estimated log p(x); on 1,000 "
    "training points MCEM overfits: its train curve above its test curve, the test curve falling",
}


@dataclass(frozen=True)
class RunSpec:
    """One training run of the benchmark: which figure, data, objective, model size and samples budget."""

    figure: int
    dataset: str  # "mnist" or "frey-face" (the data source is --mnist for mnist)
    objective: str
    latent: int
    hidden: int
    train_size: int  # data.train_limit (0: every training image)
    budget: int  # training samples (epochs x training images), rounded up to whole epochs
    checkpoints: int = 0  # importance-sampling evaluations, spaced geometrically (figure 3)

    @property
    def key(self) -> str:
        """The run's name in the results (`run_key`)."""
        return run_key(self.figure, self.dataset, self.objective, self.latent, self.train_size)


def run_key(figure: int, dataset: str, objective: str, latent: int, train_size: int) -> str:
    """A run's name in the results: e.g. 'fig2/mnist/nz20/wake-sleep', 'fig3/mnist/n1000/nz3/mcem'."""
    size = f"/n{train_size}" if figure == 3 else ""
    return f"fig{figure}/{dataset}{size}/nz{latent}/{objective}"


def plan(a: argparse.Namespace) -> list[RunSpec]:
    """Every run of this invocation, figure 3's first (its MCEM runs are the longest).

    Figure 3's sets of at most --small-set images get --fig3-small-budget for every objective; larger sets
    get --fig3-budget, and MCEM on them --mcem-budget (its HMC E-step costs about 25 training steps).
    """
    runs = []
    for n in a.fig3_sizes:
        for obj in ("elbo", "wake-sleep", "mcem"):
            small = n <= a.small_set
            budget = a.fig3_small_budget if small else a.mcem_budget if obj == "mcem" else a.fig3_budget
            runs.append(RunSpec(3, "mnist", obj, 3, 100, n, budget, a.checkpoints))
    for dataset, sizes, budget in (
        ("mnist", a.mnist_nz, a.mnist_budget),
        ("frey-face", a.frey_nz, a.frey_budget),
    ):
        hidden, limit = (500, a.fig2_limit) if dataset == "mnist" else (200, 0)
        for nz in sizes:
            for obj in ("elbo", "wake-sleep"):
                runs.append(RunSpec(2, dataset, obj, nz, hidden, limit, budget))
    return runs


def epochs_for(budget: int, n: int) -> int:
    """Whole epochs of n images that spend at least `budget` samples."""
    return max(1, math.ceil(budget / n))


def checkpoint_epochs(epochs: int, count: int) -> list[int]:
    """Epochs at which to evaluate: epochs / 2^(count-1), ..., epochs, doubling, rounded up, distinct."""
    if count < 1:
        return []
    return sorted({max(1, math.ceil(epochs / 2 ** (count - 1 - i))) for i in range(count)})


def avx512_bf16() -> bool:
    """Whether the CPU flags name avx512_bf16 (bf16 matrix multiply in hardware)."""
    try:
        return "avx512_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


class Store:
    """The results file: read once, each run merged in and written atomically, optionally committed to git."""

    def __init__(self, path: Path, header: dict[str, Any], commit: bool = False) -> None:
        self.path, self.header, self.commit = path, header, commit
        self.runs: dict[str, Any] = {}
        self.paired: dict[str, Any] = {}  # figure 3: objectives against each other on the same test images
        if path.is_file():
            try:
                figures = json.loads(path.read_text()).get("figures", {})
            except (OSError, ValueError):
                figures = {}
            self.runs, self.paired = figures.get("runs", {}), figures.get("paired_test_log_px", {})

    def finished(self, spec: RunSpec, settings: dict[str, Any]) -> bool:
        """The run is held finished, with the same spec and evaluation settings."""
        old = self.runs.get(spec.key)
        return bool(
            old and old.get("done") and old.get("spec") == asdict(spec) and old.get("eval") == settings
        )

    def put(self, key: str | None, entry: dict[str, Any], message: str | None = None) -> None:
        """Merge one run's entry (key None: none) and rewrite the file (and commit it, with --commit-results)."""
        from vaelab.io import atomic_write_json

        if key is not None:
            self.runs[key] = entry
        body = {
            **self.header,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "load_average": load_average(),
        }
        body["figures"] = {
            "runs": dict(sorted(self.runs.items())),
            "summary": summarise(self.runs),
            "paired_test_log_px": self.paired,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, body)
        if self.commit and message:
            rel = str(self.path.relative_to(ROOT))
            done = subprocess.run(["git", "add", "--", rel], cwd=ROOT, capture_output=True, text=True)
            if done.returncode == 0:
                done = subprocess.run(
                    ["git", "commit", "-q", "-m", message, "--", rel],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                )
            if done.returncode != 0:
                print(f"  (git commit of {rel} failed: {done.stderr.strip()[:200]})", flush=True)


def config_for(spec: RunSpec, a: argparse.Namespace):
    """The paper's config file with this run's data, size, objective, epochs, seed and threads."""
    from vaelab.config import build_config

    flat: dict[str, Any] = {
        "data.data_dir": a.data_dir,
        "data.valid_fraction": 0.0,
        "data.train_limit": spec.train_size,
        "model.latent_dim": spec.latent,
        "model.hidden": (spec.hidden,),
        "objective.name": spec.objective,
        "train.threads": a.threads,
        "train.progress": False,
        "train.seed": a.seed,
    }
    if spec.dataset == "mnist":
        flat["data.name"] = a.mnist
    return build_config(CONFIGS[spec.dataset], flat)


_SOURCES: dict[tuple, Any] = {}


def splits_for(spec: RunSpec, cfg, a: argparse.Namespace):
    """(DataSplits to train with, Prepared train subset, Prepared test images) of one run.

    The trainer's validation slot holds the first --subset training images, so each epoch's record scores the
    ELBO on them; figure 3 keeps only the first --eval-images test images (figure 2: the whole test set).
    """
    import torch

    from vaelab.data import DataSplits, load_data, prepare

    key = (cfg.data.name, cfg.data.data_dir, spec.train_size)
    if key not in _SOURCES:
        _SOURCES[key] = load_data(cfg.data)
    data = _SOURCES[key]
    subset = data.train.subset(torch.arange(min(a.subset, len(data.train))), "train-subset")
    test = (
        data.test if spec.figure == 2 else data.test.subset(torch.arange(min(a.eval_images, len(data.test))))
    )
    mode, seed = cfg.data.binarize, cfg.data.binarize_seed
    # the draws the trainer makes of its validation (seed + 2) and test (seed + 1) splits
    return (
        DataSplits(train=data.train, valid=subset, test=test),
        prepare(subset, mode, "cpu", seed + 2, train=False),
        prepare(test, mode, "cpu", seed + 1, train=False),
    )


def importance(run: Path, data, a: argparse.Namespace) -> tuple[dict[str, Any], list[float]]:
    """IS log p(x) of the run's last checkpoint on `data`, through vaelab.evaluate, and the per-image values."""
    from vaelab import evaluate

    r = evaluate(run, data, importance=a.k, which="last", seed=a.seed)
    i = r["importance"]
    point = {
        "log_px": i["log_px"],
        "stderr": i["stderr"],
        "elbo": r["elbo"]["estimate"],
        "ess_mean": i["ess_mean"],
        "K": i["num_samples"],
        "images": i["num_images"],
        "seconds": i["seconds"],
    }
    return point, list(i["per_datum"])


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean of a - b over the same images, and its standard error."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / max(len(d) - 1, 1)
    return {"mean": mean, "stderr": math.sqrt(var / len(d))}


def curve_of(history: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The per-epoch ELBO curve: samples evaluated, fixed training subset, running average and test."""
    return [
        {
            "epoch": r["epoch"],
            "samples": r["epoch"] * n,
            "train_elbo": r.get("valid_elbo"),
            "train_elbo_running": r.get("train_elbo"),
            "test_elbo": r.get("test_elbo"),
            "seconds": r["seconds"],
        }
        for r in history
    ]


def run_one(spec: RunSpec, a: argparse.Namespace, store: Store, settings: dict[str, Any]) -> dict[str, Any]:
    """Train one run to its budget (resuming its folder if a killed run left one), evaluating as it goes."""
    from vaelab.train.checkpoint import read_checkpoint
    from vaelab.train.loop import train

    cfg = config_for(spec, a)
    data, train_is, test_is = splits_for(spec, cfg, a)
    n = len(data.train)
    epochs = epochs_for(spec.budget, n)
    marks = checkpoint_epochs(epochs, spec.checkpoints)
    out = Path(a.runs_dir) / spec.key.replace("/", "_")
    old = store.runs.get(spec.key) or {}
    last_pt = out / "checkpoints" / "last.pt"
    old_spec = old.get("spec") or {}
    # the same run, unfinished (killed) or finished on a smaller budget (then continued: resuming is exact)
    resume = (
        last_pt.is_file()
        and {**old_spec, "budget": spec.budget} == asdict(spec)
        and old_spec["budget"] <= spec.budget
        and old.get("eval") == settings
    )
    before = old.get("wall_seconds", 0.0) if resume else 0.0  # spent by the killed run(s)
    cpu_before = old.get("cpu_seconds", 0.0) if resume else 0.0
    is_curve: list[dict[str, Any]] = list(old.get("is_curve", [])) if resume else []
    entry: dict[str, Any] = {
        "spec": asdict(spec),
        "eval": settings,
        "done": False,
        "train_images": n,
        "epochs_planned": epochs,
        "budget_samples": epochs * n,
        "checkpoint_epochs": sorted(set(marks) | {p["epoch"] for p in is_curve}),
        "eval_seconds": old.get("eval_seconds", 0.0) if resume else 0.0,
        "load_average_before": load_average(),
        "git_commit": git_commit(),
    }
    per_datum: dict[int, list[float]] = {}
    started, cpu_started = time.perf_counter(), time.process_time()

    def evaluate_at(e: int) -> None:
        if e not in marks or any(p["epoch"] == e for p in is_curve):
            return
        t = time.perf_counter()
        tr, _ = importance(out, train_is, a)
        te, per_datum[e] = importance(out, test_is, a)
        entry["eval_seconds"] += time.perf_counter() - t
        is_curve.append({"epoch": e, "samples": e * n, "train": tr, "test": te})
        print(
            f"    epoch {e} ({e * n:,} samples): log p(x) train {tr['log_px']:.2f} +- {tr['stderr']:.2f}, "
            f"test {te['log_px']:.2f} +- {te['stderr']:.2f} (IS K={a.k}; {time.perf_counter() - t:.0f} s)",
            flush=True,
        )
        entry.update(
            is_curve=is_curve,
            wall_seconds=before + time.perf_counter() - started,
            cpu_seconds=cpu_before + time.process_time() - cpu_started,
        )
        store.put(spec.key, dict(entry))

    if resume:  # a kill between a checkpoint and its evaluation: evaluate that checkpoint first
        evaluate_at(int(read_checkpoint(last_pt)["epoch"]))
    res = train(
        cfg.replace(**{"train.epochs": epochs}),
        out=out,
        resume=resume,
        overwrite=not resume,
        data=data,
        explicit={"train.epochs"},
        on_epoch=lambda record: evaluate_at(record["epoch"]),
    )
    curve = curve_of(res.history, n)
    if resume and old_spec["budget"] < spec.budget:
        entry["continued_from_budget"] = old_spec["budget"]
    entry.update(
        done=True,
        resumed=resume,
        epochs=len(curve),
        samples=len(curve) * n,
        wall_seconds=before + time.perf_counter() - started,
        cpu_seconds=cpu_before + time.process_time() - cpu_started,
        train_seconds=sum(r["seconds"] for r in res.history),
        curve=curve,
        final=curve[-1],
        load_average_after=load_average(),
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    if is_curve:
        entry["is_curve"] = is_curve
        best = max(is_curve, key=lambda p: p["test"]["log_px"])
        last = is_curve[-1]
        peak = {"epoch": best["epoch"], "samples": best["samples"], "log_px": best["test"]["log_px"]}
        entry["test_peak"] = peak
        if best["epoch"] in per_datum and last["epoch"] in per_datum:  # not across a resume
            entry["test_change_from_peak"] = paired(per_datum[last["epoch"]], per_datum[best["epoch"]])
    return entry


def paired_panels(specs: list[RunSpec], a: argparse.Namespace, store: Store) -> dict[str, Any]:
    """Figure 3's objectives against each other at their last checkpoints, image by image on the same test
    images: each run's last.pt is scored again with the same seed (so its final IS number comes back, checked),
    and the paired differences of log p(x) are kept. Needs the run folders; panels without them are skipped."""
    out: dict[str, Any] = {}
    for size in sorted({s.train_size for s in specs if s.figure == 3}):
        group = [s for s in specs if s.figure == 3 and s.train_size == size]
        folders = {s.objective: Path(a.runs_dir) / s.key.replace("/", "_") for s in group}
        runs = {s.objective: store.runs.get(s.key) or {} for s in group}
        if not all(r.get("done") for r in runs.values()) or not all(
            (f / "checkpoints" / "last.pt").is_file() for f in folders.values()
        ):
            continue
        values, panel = {}, {}
        for s in group:
            _, _, test_is = splits_for(s, config_for(s, a), a)
            point, values[s.objective] = importance(folders[s.objective], test_is, a)
            stored = runs[s.objective]["is_curve"][-1]["test"]["log_px"]
            panel[f"{s.objective}_log_px"] = point["log_px"]
            panel[f"{s.objective}_reproduces_final"] = abs(point["log_px"] - stored) < 1e-6
        names = [s.objective for s in group]
        for i, x in enumerate(names):
            for y in names[i + 1 :]:
                panel[f"{x}_minus_{y}"] = paired(values[x], values[y])
        panel["images"] = len(next(iter(values.values())))
        out[f"n{size}"] = panel
    return out


def _final(run: dict[str, Any]) -> dict[str, Any]:
    return run.get("final") or {}


def summarise(runs: dict[str, Any]) -> dict[str, Any]:
    """Per panel: the final numbers of each objective, and the comparisons the paper's shape is about."""
    fig2: dict[str, Any] = {}
    fig3: dict[str, Any] = {}
    for r in runs.values():
        if not r.get("done"):
            continue
        s = r["spec"]
        if s["figure"] == 2:
            panel = fig2.setdefault(
                f"{s['dataset']}/nz{s['latent']}", {"dataset": s["dataset"], "latent": s["latent"]}
            )
            f = _final(r)
            panel[s["objective"]] = {
                k: f.get(k) for k in ("samples", "train_elbo", "train_elbo_running", "test_elbo")
            }
        else:
            panel = fig3.setdefault(f"n{s['train_size']}", {"train_size": r["train_images"]})
            last = r["is_curve"][-1]
            panel[s["objective"]] = {
                "samples": last["samples"],
                "train_log_px": last["train"]["log_px"],
                "train_stderr": last["train"]["stderr"],
                "test_log_px": last["test"]["log_px"],
                "test_stderr": last["test"]["stderr"],
                "train_minus_test": last["train"]["log_px"] - last["test"]["log_px"],
                "test_peak": r.get("test_peak"),
                "test_change_from_peak": r.get("test_change_from_peak"),
            }
    for panel in fig2.values():
        if "elbo" in panel and "wake-sleep" in panel:
            for split in ("train_elbo", "test_elbo"):
                a, b = panel["elbo"][split], panel["wake-sleep"][split]
                panel[f"aevb_minus_ws_{split}"] = None if a is None or b is None else a - b
    gaps = [
        p["aevb_minus_ws_train_elbo"] for p in fig2.values() if p.get("aevb_minus_ws_train_elbo") is not None
    ]
    shape: dict[str, Any] = {
        "aevb_above_ws_every_panel": bool(gaps) and all(g > 0 for g in gaps) if gaps else None
    }
    for dataset in ("mnist", "frey-face"):
        ps = sorted(
            (p for p in fig2.values() if p["dataset"] == dataset and "aevb_minus_ws_train_elbo" in p),
            key=lambda p: p["latent"],
        )
        if len(ps) >= 2:
            shape[f"{dataset}_gap_by_nz"] = {str(p["latent"]): p["aevb_minus_ws_train_elbo"] for p in ps}
            shape[f"{dataset}_gap_largest_nz_above_smallest"] = (
                ps[-1]["aevb_minus_ws_train_elbo"] > ps[0]["aevb_minus_ws_train_elbo"]
            )
    for name, panel in fig3.items():
        m = panel.get("mcem")
        if m:
            change = m.get("test_change_from_peak")
            shape[f"mcem_{name}_train_above_test"] = m["train_minus_test"] > 0
            shape[f"mcem_{name}_test_falling"] = (
                None if change is None else change["mean"] < -2 * change["stderr"]
            )
        if "elbo" in panel:
            for other in ("wake-sleep", "mcem"):
                if other in panel:
                    shape[f"{name}_aevb_minus_{other}_test_log_px"] = (
                        panel["elbo"]["test_log_px"] - panel[other]["test_log_px"]
                    )
    return {"figure_2": fig2, "figure_3": fig3, "shape": shape, "paper": PAPER}


def draw(runs: dict[str, Any], path: Path) -> Path:
    """The paper's panels: figure 2 one row per data set (train solid, test dashed), figure 3 one panel per N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from vaelab.io import atomic_save

    done = {k: r for k, r in runs.items() if r.get("done") or r.get("is_curve")}
    rows2 = {}
    for r in done.values():
        s = r["spec"]
        if s["figure"] == 2:
            rows2.setdefault(s["dataset"], set()).add(s["latent"])
    sizes3 = sorted({r["spec"]["train_size"] for r in done.values() if r["spec"]["figure"] == 3})
    ncols = max([len(v) for v in rows2.values()] + [len(sizes3), 1])
    nrows = len(rows2) + (1 if sizes3 else 0)
    fig = plt.figure(figsize=(3.2 * ncols, 3.0 * max(nrows, 1) + 0.6))
    grid = fig.add_gridspec(max(nrows, 1), 2 * ncols)
    colors = {"elbo": "C0", "wake-sleep": "C3", "mcem": "C2"}
    for row, dataset in enumerate(sorted(rows2, key=lambda d: d != "mnist")):
        for col, nz in enumerate(sorted(rows2[dataset])):
            ax = fig.add_subplot(grid[row, 2 * col : 2 * col + 2])
            lows = []
            for obj in ("elbo", "wake-sleep"):
                r = done.get(run_key(2, dataset, obj, nz, 0))
                if not r or not r.get("curve"):
                    continue
                c = r["curve"]
                xs = [p["samples"] for p in c]
                for split, ls in (("train_elbo", "-"), ("test_elbo", "--")):
                    ys = [p[split] for p in c]
                    ax.plot(xs, ys, ls, color=colors[obj], label=f"{OBJECTIVES[obj]} ({split.split('_')[0]})")
                    lows += ys[len(ys) // 4 :]
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            if lows:
                top, low = max(lows), min(lows)
                ax.set_ylim(low - 0.15 * (top - low + 1), top + 0.1 * (top - low + 1))
            ax.set_title(f"{'MNIST' if dataset == 'mnist' else 'Frey Face'}, $N_z$ = {nz}", fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("training samples evaluated", fontsize=7)
            if col == 0:
                ax.set_ylabel("ELBO per datum (nats)", fontsize=8)
                ax.legend(fontsize=6)
    for i, size in enumerate(sizes3):
        span = 2 * ncols // len(sizes3)
        ax = fig.add_subplot(grid[nrows - 1, i * span : (i + 1) * span])
        n_images = None
        for obj in ("elbo", "wake-sleep", "mcem"):
            r = done.get(run_key(3, "mnist", obj, 3, size))
            if not r or not r.get("is_curve"):
                continue
            n_images = r["train_images"]
            pts = r["is_curve"]
            xs = [p["samples"] for p in pts]
            for split, ls in (("train", "-"), ("test", "--")):
                ax.errorbar(
                    xs,
                    [p[split]["log_px"] for p in pts],
                    yerr=[p[split]["stderr"] for p in pts],
                    fmt="o" + ls,
                    ms=3,
                    capsize=2,
                    color=colors[obj],
                    label=f"{OBJECTIVES[obj]} ({split})",
                )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"MNIST, $N_{{train}}$ = {n_images:,}, $N_z$ = 3: IS log p(x)", fontsize=9)
        ax.set_xlabel("training samples evaluated", fontsize=8)
        ax.set_ylabel("log p(x) (nats)", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.suptitle(
        "Kingma & Welling 2014, figures 2 (rows 1-2: lower bound) and 3 (last row), measured on one CPU thread",
        fontsize=10,
    )
    fig.tight_layout()
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path


# --quick: mnist-5k subsets, one panel per data set, tiny budgets and evaluations
QUICK: dict[str, Any] = {
    "mnist": "mnist-5k",
    "mnist_nz": [3],
    "frey_nz": [2],
    "fig3_sizes": [200, 500],
    "fig2_limit": 500,
    "mnist_budget": 1500,
    "frey_budget": 3 * 1769,
    "fig3_budget": 2000,
    "fig3_small_budget": 800,
    "mcem_budget": 1000,
    "small_set": 200,
    "checkpoints": 3,
    "k": 20,
    "eval_images": 100,
    "subset": 200,
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; --quick swaps in tiny data, budgets and evaluations."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--mnist", default="mnist", help="the MNIST source (mnist, or mnist-5k offline)")
    p.add_argument("--mnist-nz", type=int, nargs="+", default=[3, 5, 10, 20, 200])
    p.add_argument("--frey-nz", type=int, nargs="+", default=[2, 5, 10, 20])
    p.add_argument(
        "--fig3-sizes", type=int, nargs="*", default=[1000, 50000], help="training set sizes of figure 3"
    )
    p.add_argument(
        "--fig2-limit", type=int, default=0, help="MNIST training images of figure 2 (0: all 60,000)"
    )
    p.add_argument(
        "--mnist-budget", type=int, default=480_000, help="samples per figure-2 MNIST run (8 epochs)"
    )
    p.add_argument("--frey-budget", type=int, default=353_800, help="samples per Frey Face run (200 epochs)")
    p.add_argument("--fig3-budget", type=int, default=1_000_000, help="samples per figure-3 run")
    p.add_argument(
        "--fig3-small-budget", type=int, default=1_000_000, help="samples per run on the small set"
    )
    p.add_argument("--mcem-budget", type=int, default=500_000, help="samples of MCEM on the large set")
    p.add_argument("--small-set", type=int, default=1000, help="figure-3 sets up to this size are 'small'")
    p.add_argument("--checkpoints", type=int, default=8, help="IS evaluations per figure-3 run (geometric)")
    p.add_argument("--k", type=int, default=200, help="IS proposals per image")
    p.add_argument("--eval-images", type=int, default=1000, help="test images of figure 3")
    p.add_argument("--subset", type=int, default=1000, help="first N training images scored along training")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--results", default=None, help="the results file (default benchmarks/results/kingma2014.json)"
    )
    p.add_argument(
        "--runs-dir",
        default=None,
        help="run folders, kept for resuming (default /tmp/vaelab-kingma2014-runs; --quick: a new temporary one)",
    )
    p.add_argument("--commit-results", action="store_true", help="git-commit the results file after each run")
    p.add_argument("--quick", action="store_true", help="mnist-5k subsets, tiny budgets: under a minute")
    if "--quick" in (sys.argv[1:] if argv is None else argv):
        p.set_defaults(**QUICK)  # flags given beside --quick still win
    a = p.parse_args(argv)
    if a.quick:
        a.runs_dir = a.runs_dir or tempfile.mkdtemp(prefix="vaelab-kingma2014-quick-")
        a.results = a.results or str(Path(a.runs_dir) / "kingma2014.json")
    a.runs_dir = a.runs_dir or "/tmp/vaelab-kingma2014-runs"
    a.results = Path(a.results) if a.results else RESULTS / "kingma2014.json"
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    import torch

    torch.set_num_threads(a.threads)
    specs = plan(a)
    settings = {
        "K": a.k,
        "test_images_fig3": a.eval_images,
        "train_subset": a.subset,
        "seed": a.seed,
        "mnist": a.mnist,
    }
    header = {
        "benchmark": "kingma2014",
        "command": command_line(),
        "git_commit": git_commit(),
        "machine": {**machine(a.threads), "avx512_bf16": avx512_bf16()},
        "setting": {
            "paper": "Kingma & Welling 2014, Auto-Encoding Variational Bayes, figures 2 and 3",
            "configs": {k: str(v.relative_to(ROOT)) for k, v in CONFIGS.items()},
            "x_axis": "training samples evaluated = epochs x training images (evaluation not counted)",
            "figure_2_y": "ELBO per datum (one draw of q, analytic KL) after each epoch on the first "
            f"{a.subset} training images (fixed draw) and on the whole test set; 'train_elbo_running' is the "
            "epoch's running average over its batches",
            "figure_3_y": f"IS log p(x), K={a.k}, on the first {a.subset} training and {a.eval_images} test "
            "images (fixed draws), stderr over images",
            "budgets_samples": {
                "figure 2 MNIST": a.mnist_budget,
                "figure 2 Frey Face": a.frey_budget,
                "figure 3 small set": a.fig3_small_budget,
                "figure 3 large set": a.fig3_budget,
                "figure 3 MCEM on the large set": a.mcem_budget,
            },
            "threads": a.threads,
            "times": "per run: wall_seconds (the machine is shared: other work slows it), cpu_seconds (this "
            "process's CPU time), train_seconds (the epochs' own timing), eval_seconds (IS evaluations)",
            "seed": a.seed,
            "quick": a.quick,
            "data": f"{a.mnist} (dynamic binarization; evaluation on a fixed draw), frey-face (no binarization)",
        },
    }
    store = Store(a.results, header, a.commit_results)
    Path(a.runs_dir).mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    print(
        f"kingma2014: {len(specs)} runs on {a.threads} thread(s), results in {a.results} (load {load_average()})",
        flush=True,
    )
    for spec in specs:
        if store.finished(spec, settings):
            print(f"  {spec.key}: finished earlier, kept", flush=True)
            continue
        print(f"  {spec.key}: budget {spec.budget:,} samples", flush=True)
        entry = run_one(spec, a, store, settings)
        store.put(spec.key, entry, message=f"benchmarks/results/kingma2014.json: {spec.key}")
        draw(store.runs, a.results.with_suffix(".png"))
        f = entry["final"]
        print(
            f"  {spec.key}: {entry['epochs']} epochs, {entry['samples']:,} samples in {entry['wall_seconds']:.0f} s "
            f"({entry['cpu_seconds']:.0f} CPU s, {entry['train_seconds']:.0f} s training): ELBO train {f['train_elbo']:.2f}, test {f['test_elbo']:.2f}",
            flush=True,
        )
    paired_now = paired_panels(specs, a, store)
    if paired_now:
        store.paired = {**store.paired, **paired_now}
        store.put(None, {}, message="benchmarks/results/kingma2014.json: figure 3, paired test log p(x)")
        for name, panel in paired_now.items():
            diffs = ", ".join(
                f"{k} {v['mean']:+.2f} +- {v['stderr']:.2f}" for k, v in panel.items() if "_minus_" in k
            )
            print(f"  figure 3, {name}, paired on {panel['images']} test images: {diffs}")
    summary = summarise(store.runs)
    print(
        f"kingma2014: done in {time.perf_counter() - total:.0f} s; wrote {a.results} and {a.results.with_suffix('.png')}"
    )
    for name, value in summary["shape"].items():
        print(f"  {name}: {value}")
    for fig, text in PAPER.items():
        print(f"  paper, {fig}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
