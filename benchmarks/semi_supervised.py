"""Semi-supervised M2 (Kingma, Rezende, Mohamed & Welling 2014) on MNIST with N labels: test classification error.

Trains `--model m2` with `data.labelled=N` (a balanced, seeded choice of N training labels; the rest of the
training images unlabelled) and prints q(y|x)'s test error each epoch and at the end, beside the paper's
Table 1 (M2 alone with 100 labels: 11.97% +- 1.71; M1+M2: 3.33% +- 0.14).

    python benchmarks/semi_supervised.py --data-dir ../shared/data --epochs 30 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import ROOT, default_data_dir, load_average, write_results  # noqa: E402

PUBLISHED = {  # Kingma et al. 2014, Table 1, MNIST test error (%) by number of labels
    100: {"M2": (11.97, 1.71), "M1+M2": (3.33, 0.14)},
    600: {"M2": (4.94, 0.13), "M1+M2": (2.59, 0.05)},
    1000: {"M2": (3.60, 0.56), "M1+M2": (2.40, 0.02)},
    3000: {"M2": (3.92, 0.63), "M1+M2": (2.18, 0.04)},
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="mnist", choices=("mnist", "fashion-mnist"))
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--labelled", type=int, default=100)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--out", default=None, help="keep the run folder here (default: not written)")
    a = p.parse_args(argv)

    from vaelab import model_config
    from vaelab.errors import VaelabError
    from vaelab.train import train

    cfg = model_config("m2").replace(  # M2's own defaults, as `vaelab train --model m2` starts from
        **{
            "data.name": a.data,
            "data.data_dir": str(Path(a.data_dir).resolve()),
            "data.labelled": a.labelled,
            "train.epochs": a.epochs,
            "train.seed": a.seed,
            "train.threads": a.threads,
            "train.progress": False,
        }
    )
    load_before = load_average()

    def show(r: dict) -> None:
        print(
            f"epoch {r['epoch']}: test error {100 * r['test_error']:.2f}%, valid {100 * r['valid_error']:.2f}%, "
            f"test ELBO {r['test_elbo']:.2f} ({r['seconds']:.0f} s)",
            flush=True,
        )

    try:
        res = train(cfg, out=a.out, on_epoch=show)
    except VaelabError as e:
        print(f"semi_supervised: error: {e}", file=sys.stderr)
        return 1
    h = res.history
    last = h[-1]
    published = PUBLISHED.get(a.labelled, {})
    figures = {
        "test_error": {"value": last["test_error"], "unit": "fraction"},
        "valid_error": {"value": last["valid_error"], "unit": "fraction"},
        "test_error_per_epoch": {"values": [r["test_error"] for r in h], "unit": "fraction"},
        "test_elbo": {"value": last["test_elbo"], "unit": "nats per image, y summed out"},
        "train_seconds": {"value": sum(r["seconds"] for r in h), "unit": "s"},
        "published_test_error_percent": {k: {"mean": m, "sd": s} for k, (m, s) in published.items()},
    }
    setting = {
        "model": "M2 (vaelab defaults: 500 softplus hidden, 50-d z, Bernoulli decoder, Adam 1e-3, batch 128)",
        "data": a.data,
        "labelled": a.labelled,
        "labelled_share": cfg.data.labelled_share,
        "epochs": a.epochs,
        "seed": a.seed,
        "threads": a.threads,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    path = write_results(
        f"semi_supervised_{a.data.replace('-', '_')}_{a.labelled}", setting, figures, a.threads
    )
    paper = ", ".join(f"{k} {m:.2f}% +- {s:.2f}" for k, (m, s) in published.items())
    print(
        f"M2 with {a.labelled} labels, {a.epochs} epochs: test error {100 * last['test_error']:.2f}%"
        + (f" (published: {paper})" if paper else "")
        + f"; results: {path.relative_to(ROOT)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
