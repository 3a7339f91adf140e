"""What `--precision bf16` costs in test NLL: the 784-400-20 VAE trained in fp32 and under bf16 autocast.

Each (precision, seed) pair trains the throughput benchmark's model (full MNIST or Fashion-MNIST from
--data-dir, dynamic binarization, batch 128, Adam 1e-3) for the same epochs, and is scored by importance
sampling with K proposals on the same test images with the same evaluation seed (evaluation is fp32 for
both). Two trainings differ by their seed as well as by their precision, so the paired differences are
printed beside the seed-to-seed difference of fp32 with itself: bf16 matters only if its gap is larger.

    python benchmarks/precision.py --data-dir ../shared/data                 # 20 epochs, 2 seeds, K=1000
    python benchmarks/precision.py --data-dir ../shared/data --quick         # a couple of minutes
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import ROOT, default_data_dir, load_average, mlp_vae_config, write_results  # noqa: E402
from reproduce_iwae import paired_difference  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def train_and_score(a: argparse.Namespace, precision: str, seed: int, root: Path) -> dict[str, Any]:
    """Train one model and estimate log p(x) of the first --eval-images test images."""
    from vaelab import evaluate
    from vaelab.train import train

    out = root / f"{precision}-seed{seed}"
    cfg = mlp_vae_config(
        a.data, a.data_dir, limit=a.limit, epochs=a.epochs, threads=a.threads, seed=seed, precision=precision
    )
    res = train(cfg, out=out)
    rates = [r["samples_per_s"] for r in res.history]
    r = evaluate(out, importance=a.importance, limit=a.eval_images, seed=a.eval_seed, which="last")
    i = r["importance"]
    return {
        "precision": precision,
        "seed": seed,
        "samples_per_s": statistics.median(rates[1:] or rates),
        "test_elbo": res.history[-1]["test_elbo"],
        "nll": i["nll"],
        "stderr": i["stderr"],
        "per_datum": i["per_datum"],
    }


def comparisons(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Paired NLL differences on the same images: bf16 - fp32 for each seed, and fp32 - fp32 across seeds."""
    by = {(r["precision"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    pairs = [(("bf16", s), ("fp32", s)) for s in seeds if ("bf16", s) in by and ("fp32", s) in by]
    pairs += [(("fp32", s), ("fp32", seeds[0])) for s in seeds[1:] if ("fp32", s) in by]
    out = []
    for x, y in pairs:
        # NLL = -log p(x): the difference of NLLs is the difference of the negated per-datum log p(x)
        mean, se = paired_difference([-v for v in by[x]["per_datum"]], [-v for v in by[y]["per_datum"]])
        out.append({"a": f"{x[0]} seed {x[1]}", "b": f"{y[0]} seed {y[1]}", "nll_diff": mean, "stderr": se})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="mnist", choices=("mnist", "fashion-mnist"))
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    p.add_argument("--importance", type=int, default=1000, metavar="K")
    p.add_argument("--eval-images", type=int, default=10_000, help="first N test images")
    p.add_argument("--eval-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--limit", type=int, default=0, help="train on the first N images (0: all)")
    p.add_argument("--quick", action="store_true", help="2 epochs on 6,400 images, K=100 on 500 test images")
    a = p.parse_args(argv)
    if a.quick:
        a.epochs, a.limit, a.importance, a.eval_images = 2, a.limit or 6400, 100, 500
    a.data_dir = str(Path(a.data_dir).resolve())
    seeds = [int(s) for s in a.seeds.split(",") if s]
    if not seeds or a.epochs < 1 or a.importance < 1:
        print("precision: error: need --seeds, --epochs >= 1 and --importance >= 1", file=sys.stderr)
        return 2

    from vaelab.errors import VaelabError

    load_before, began = load_average(), time.perf_counter()
    print(
        f"{a.data}: {a.epochs} epochs per model, seeds {seeds}, IS K={a.importance} on {a.eval_images} test images"
    )
    runs = []
    try:
        with tempfile.TemporaryDirectory(prefix="vaelab-precision-") as tmp:
            for seed in seeds:
                for precision in PRECISIONS:
                    r = train_and_score(a, precision, seed, Path(tmp))
                    runs.append(r)
                    print(
                        f"{precision} seed {seed}: test NLL {r['nll']:.2f} +- {r['stderr']:.2f}, "
                        f"test ELBO {r['test_elbo']:.2f}, {r['samples_per_s']:.0f} samples/s",
                        flush=True,
                    )
    except VaelabError as e:
        print(f"precision: error: {e}", file=sys.stderr)
        return 1
    diffs = comparisons(runs)
    for d in diffs:
        print(f"NLL({d['a']}) - NLL({d['b']}) = {d['nll_diff']:+.3f} +- {d['stderr']:.3f} nats (paired)")
    figures = {
        "runs": [{k: v for k, v in r.items() if k != "per_datum"} for r in runs],
        "paired_nll_differences": {"values": diffs, "unit": "nats per image"},
    }
    setting = {
        "model": "VAE 784-400-20, ReLU MLP, Bernoulli decoder (logits), N(0, I) prior",
        "data": a.data,
        "binarization": "dynamic (training), one fixed draw of the test set",
        "batch_size": 128,
        "optimizer": "Adam",
        "lr": 1e-3,
        "epochs": a.epochs,
        "seeds": seeds,
        "importance_samples": a.importance,
        "eval_images": a.eval_images,
        "eval_seed": a.eval_seed,
        "threads": a.threads,
        "quick": a.quick,
        "wall_seconds": time.perf_counter() - began,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    path = write_results("precision", setting, figures, threads=a.threads)
    print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
