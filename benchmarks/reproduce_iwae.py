"""Reproduce Burda, Grosse & Salakhutdinov 2016 ("Importance Weighted Autoencoders") within a stated CPU budget:
the one-stochastic-layer model 784-200-200-50 (tanh) on dynamically binarized MNIST, Adam, batches of 20,
the paper's learning-rate schedule (configs/iwae2016-mnist.yaml), trained with the ELBO (the VAE) or the
IWAE bound with k samples.

Along training, whole epochs run until the training budget is spent (evaluation time not counted); at
--checkpoints moments spaced geometrically over the budget (and after the first epoch) the test NLL is
estimated by importance sampling through `vaelab.evaluate` (K=5000 on the first N test images): the curve
of test NLL against training time, also drawn to `benchmarks/results/reproduce_iwae.png`. At the end, AIS
(T=1000, C=16) and IS (same K) on the first --ais-images of those images check Wu et al. 2017's observation
that AIS comes out about one nat above the IS bound on such a model: both numbers and their paired
difference are recorded, whatever they are. Published NLLs (3,280 epochs) are printed beside what was reached.

    python benchmarks/reproduce_iwae.py --data-dir ../shared/data                            # VAE, 20 min
    python benchmarks/reproduce_iwae.py --objective iwae --k 5 --budget-minutes 20
    python benchmarks/reproduce_iwae.py --objective iwae --k 50 --budget-minutes 20
    python benchmarks/reproduce_iwae.py --quick                                                # under a minute

Each run merges its variant (objective and k; quick runs apart) into `benchmarks/results/reproduce_iwae.json`
and redraws the figure from every variant there.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import RESULTS, ROOT, default_data_dir, git_commit, load_average, write_results  # noqa: E402

CONFIG = ROOT / "configs" / "iwae2016-mnist.yaml"
# Burda et al. 2016, Table 1, MNIST, one stochastic layer: test NLL (IS, K=5000) after 3,280 epochs.
PUBLISHED = {
    ("elbo", 1): 86.76,
    ("elbo", 5): 86.47,
    ("elbo", 50): 86.35,
    ("iwae", 1): 86.76,
    ("iwae", 5): 85.54,
    ("iwae", 50): 84.78,
}
QUICK = {
    "train_limit": 1000,
    "budget_minutes": 0.1,
    "max_epochs": 2,
    "importance": 50,
    "eval_images": 50,
    "checkpoints": 2,
    "ais": 20,
    "chains": 4,
    "ais_images": 10,
}


def variant_name(objective: str, k: int, quick: bool = False) -> str:
    """The key of a variant in the results: e.g. 'iwae-k50', with '-quick' for quick runs."""
    return f"{objective}-k{k}" + ("-quick" if quick else "")


def checkpoint_marks(budget_s: float, count: int) -> list[float]:
    """`count` training times at which to evaluate, doubling up to the budget: budget / 2^(count-1), ..., budget."""
    if count < 1:
        return []
    return [budget_s / 2 ** (count - 1 - i) for i in range(count)]


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean of a - b over paired data and its standard error."""
    if len(a) != len(b) or not a:
        raise ValueError("paired values of equal, non-zero length are needed")
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    if len(d) < 2:
        return mean, float("nan")
    var = sum((x - mean) ** 2 for x in d) / (len(d) - 1)
    return mean, math.sqrt(var / len(d))


def config_for(a: argparse.Namespace):
    """configs/iwae2016-mnist.yaml with this run's objective, k, data folder, seed and threads."""
    from vaelab.config import build_config

    flat: dict[str, Any] = {
        "data.data_dir": a.data_dir,
        "objective.name": a.objective,
        "objective.num_samples": a.k,
        "train.threads": a.threads,
        "train.progress": False,
        "train.seed": a.seed,
    }
    if a.quick:
        flat["data.train_limit"] = QUICK["train_limit"]
    return build_config(CONFIG, flat)


def evaluate_nll(out: Path, a: argparse.Namespace) -> dict[str, Any]:
    """Test NLL by IS with K on the first N test images, through vaelab.evaluate."""
    from vaelab import evaluate

    r = evaluate(out, importance=a.importance, limit=a.eval_images, seed=a.seed, which="last")
    i = r["importance"]
    return {
        "nll": i["nll"],
        "stderr": i["stderr"],
        "elbo_nll_bound": -r["elbo"]["estimate"],
        "ess_mean": i["ess_mean"],
        "num_images": i["num_images"],
        "eval_seconds": r["seconds"],
    }


def train_with_checkpoints(cfg, out: Path, a: argparse.Namespace) -> dict[str, Any]:
    """Whole epochs until the budget is spent; IS test NLL after epoch 1 and as each checkpoint mark passes."""
    from vaelab.data import load_data
    from vaelab.train import train

    budget = a.budget_minutes * 60
    marks = checkpoint_marks(budget, a.checkpoints)
    data = load_data(cfg.data)
    epochs, train_s, last, wall_train, cpu_train, marks_done = 0, 0.0, 0.0, 0.0, 0.0, 0
    curve: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    while epochs < a.max_epochs:
        if epochs and train_s + last > budget:
            break
        t, c = time.perf_counter(), time.process_time()
        res = train(
            cfg.replace(**{"train.epochs": epochs + 1}),
            out=out,
            resume=epochs > 0,
            data=data,
            explicit={"train.epochs"},
            overwrite=epochs == 0,
        )
        wall_train += time.perf_counter() - t
        cpu_train += time.process_time() - c
        epochs, history = epochs + 1, res.history
        last = history[-1]["seconds"]
        train_s = sum(r["seconds"] for r in history)
        passed = sum(1 for m in marks if m <= train_s)
        final = train_s + last > budget or epochs >= a.max_epochs
        if epochs == 1 or passed > marks_done or final:
            marks_done = passed
            point = {"epoch": epochs, "train_seconds": train_s, **evaluate_nll(out, a)}
            curve.append(point)
            print(
                f"  epoch {epochs}, {train_s:.0f} s of training: test NLL {point['nll']:.2f} "
                f"+- {point['stderr']:.2f} (IS K={a.importance}, {point['num_images']} images)",
                flush=True,
            )
    if not curve or curve[-1]["epoch"] != epochs:
        point = {"epoch": epochs, "train_seconds": train_s, **evaluate_nll(out, a)}
        curve.append(point)
    return {
        "epochs": epochs,
        "train_seconds": train_s,
        "train_wall_seconds": wall_train,
        "train_cpu_seconds": cpu_train,
        "train_images": len(data.train.images),
        "test_elbo_per_epoch": [[round(r["seconds"], 2), r.get("test_elbo")] for r in history],
        "curve": curve,
    }


def ais_against_is(out: Path, a: argparse.Namespace) -> dict[str, Any]:
    """AIS and IS on the same first --ais-images test images: both estimates and AIS - IS, paired."""
    from vaelab import evaluate

    r = evaluate(
        out,
        importance=a.importance,
        ais=a.ais,
        chains=a.chains,
        limit=a.ais_images,
        seed=a.seed,
        which="last",
    )
    i, s = r["importance"], r["ais"]
    diff, diff_se = paired_difference(s["per_datum"], i["per_datum"])
    return {
        "num_images": s["num_images"],
        "is": {"K": i["num_samples"], "log_px": i["log_px"], "stderr": i["stderr"], "seconds": i["seconds"]},
        "ais": {
            "T": s["steps"],
            "C": s["chains"],
            "L": s["leapfrog"],
            "schedule": s["schedule"],
            "log_px": s["log_px"],
            "stderr": s["stderr"],
            "acceptance": s["acceptance"],
            "chain_spread": s["chain_spread"],
            "seconds": s["seconds"],
        },
        "ais_minus_is": diff,
        "ais_minus_is_stderr": diff_se,
        "wu_2017": "AIS about one nat above (tighter than) the IS bound on such models",
    }


def _merge(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Earlier variants of reproduce_iwae.json, with this run's replacing its own."""
    path = RESULTS / "reproduce_iwae.json"
    old: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text()).get("figures", {}).get("variants", {})
        except (OSError, ValueError):
            old = {}
    return {**old, name: entry}


def draw(variants: dict[str, Any], path: Path) -> Path:
    """Test NLL against training minutes, one line per variant, published values dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, v) in enumerate(sorted(variants.items())):
        pts = v["training"]["curve"]
        color = f"C{i}"
        ax.errorbar(
            [p["train_seconds"] / 60 for p in pts],
            [p["nll"] for p in pts],
            yerr=[p["stderr"] for p in pts],
            marker="o",
            color=color,
            capsize=2,
            label=f"{name}: {v['training']['epochs']} epochs; {v['final_nll']['estimator']}, "
            f"{pts[-1]['num_images']} test images",
        )
        if v.get("published_nll") is not None:
            ax.axhline(
                v["published_nll"], color=color, ls="--", lw=1, label=f"{name} published (3,280 epochs)"
            )
    ax.set_xscale("log")
    ax.set_xlabel("training time (minutes, evaluation excluded)")
    ax.set_ylabel("test NLL (nats per image)")
    ax.set_title("784-200-200-50 tanh on dynamically binarized MNIST (Burda et al. 2016)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument(
        "--objective", choices=("elbo", "iwae"), default="elbo", help="elbo: the VAE; iwae: IWAE_k"
    )
    p.add_argument("--k", type=int, default=1, help="samples per datum of the training objective")
    p.add_argument(
        "--budget-minutes", type=float, default=20.0, help="training wall time (evaluation excluded)"
    )
    p.add_argument("--max-epochs", type=int, default=3280)
    p.add_argument("--checkpoints", type=int, default=6, help="IS evaluations spaced geometrically in time")
    p.add_argument("--importance", type=int, default=5000, metavar="K", help="IS proposals per test image")
    p.add_argument("--eval-images", type=int, default=1000, help="first N test images for the NLL curve")
    p.add_argument("--ais", type=int, default=1000, metavar="T", help="AIS intermediate distributions")
    p.add_argument("--chains", type=int, default=16, metavar="C", help="AIS chains per image")
    p.add_argument("--ais-images", type=int, default=100, help="first N test images for AIS vs IS (0: none)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs-dir", default=None, help="keep the run folder here (default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="tiny data, budget and evaluations: under a minute")
    a = p.parse_args(argv)
    if a.k < 1:
        p.error(f"--k must be >= 1, got {a.k}")
    if a.quick:
        for key in (
            "budget_minutes",
            "max_epochs",
            "importance",
            "eval_images",
            "checkpoints",
            "ais",
            "chains",
        ):
            setattr(a, key, QUICK[key])
        a.ais_images = min(a.ais_images, QUICK["ais_images"])
    import torch

    torch.set_num_threads(a.threads)
    name = variant_name(a.objective, a.k, a.quick)
    cfg = config_for(a)
    load_before = load_average()
    tmp = tempfile.TemporaryDirectory(prefix="vaelab-iwae-") if a.runs_dir is None else None
    out = (Path(a.runs_dir) if a.runs_dir else Path(tmp.name)) / name
    print(
        f"[{name}] training 784-200-200-50 tanh for up to {a.budget_minutes:g} min on {a.threads} threads "
        f"(load {load_before})",
        flush=True,
    )
    started = time.perf_counter()
    training = train_with_checkpoints(cfg, out, a)
    final = training["curve"][-1]
    published = PUBLISHED.get((a.objective, a.k))
    print(
        f"[{name}] {training['epochs']} epochs in {training['train_seconds'] / 60:.1f} training min: test NLL "
        f"{final['nll']:.2f} +- {final['stderr']:.2f}"
        + (
            f" (published {published:.2f} after 3,280 epochs; gap {final['nll'] - published:+.2f})"
            if published
            else ""
        ),
        flush=True,
    )
    check = None
    if a.ais_images > 0:
        check = ais_against_is(out, a)
        print(
            f"[{name}] on the first {check['num_images']} test images: IS (K={check['is']['K']}) log p(x) "
            f"{check['is']['log_px']:.2f}, AIS (T={check['ais']['T']}, C={check['ais']['C']}) "
            f"{check['ais']['log_px']:.2f}: AIS - IS = {check['ais_minus_is']:+.2f} +- "
            f"{check['ais_minus_is_stderr']:.2f} nats (Wu et al. 2017: about +1)",
            flush=True,
        )
    if tmp is not None:
        tmp.cleanup()
    entry = {
        "objective": a.objective,
        "k": a.k,
        "config": cfg.to_dict(),
        "quick": a.quick,
        "budget_minutes": a.budget_minutes,
        "threads": a.threads,
        "training": training,
        "final_nll": {"value": final["nll"], "stderr": final["stderr"], "estimator": f"IS, K={a.importance}"},
        "published_nll": published,
        "gap_to_published": final["nll"] - published if published else None,
        "ais_vs_is": check,
        "total_seconds": time.perf_counter() - started,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": git_commit(),
    }
    variants = _merge(name, entry)
    setting = {
        "model": "784-200-200-50 tanh MLP, Bernoulli decoder, N(0, I) prior (configs/iwae2016-mnist.yaml)",
        "data": "mnist, dynamic binarization for training; test: one fixed Bernoulli draw",
        "importance_K": a.importance,
        "eval_images": a.eval_images,
        "ais": {"T": a.ais, "C": a.chains, "images": a.ais_images},
        "budget": "training wall time per variant; evaluation excluded (see each variant's total_seconds)",
        "this_run": name,
        "variants_note": "each variant carries its own settings, load and time; others are kept from earlier runs",
    }
    path = write_results("reproduce_iwae", setting, {"variants": variants}, threads=a.threads)
    fig = draw(variants, RESULTS / "reproduce_iwae.png")
    print(f"wrote {path.relative_to(ROOT)} and {fig.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
