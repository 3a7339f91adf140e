"""Imputation of held-out cells by a VAE on a real table against the column means (docs/your-data.md).

For each table and seed: hide a share of the cells at random (MCAR), write the table with those cells empty,
train a VAE on it with `data.missing=mask` (the hidden cells are left out of its likelihood: it never sees
them), then fill every hidden cell with its expected value under p(x_miss | x_obs), estimated by
self-normalised importance sampling (`vaelab.data.tables.impute`, K draws), and compare with the column's
mean (continuous) or most frequent value (binary, categorical) over its observed cells.

    OMP_NUM_THREADS=1 .venv/bin/python docs/examples/impute_table.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_diabetes, load_wine

import vaelab
from vaelab.config import Config
from vaelab.data.tables import impute, table_schema

TABLES = {
    # 442 patients: age, sex (1/2: binary), bmi, bp, six serum measurements, disease progression
    "diabetes": lambda: load_diabetes(scaled=False, as_frame=True).frame,
    # 178 wines: 13 chemical measurements and the cultivar (3 levels: categorical)
    "wine": lambda: load_wine(as_frame=True).frame.assign(target=lambda f: f["target"].map("c{}".format)),
}


def run(name: str, seed: int, share: float, epochs: int, samples: int, folder: Path) -> dict[str, float]:
    """One table and seed: per-column RMSE (continuous) or accuracy (binary, categorical), VAE and baseline."""
    full = TABLES[name]()
    rng = np.random.default_rng(seed)
    hidden = rng.random(full.shape) < share
    masked = full.mask(hidden)
    path = folder / f"{name}-{seed}.csv"
    masked.to_csv(path, index=False)
    cfg = Config().replace(
        **{
            "data.name": f"csv:{path}",
            "data.binarize": "none",
            "data.missing": "mask",
            "data.valid_fraction": 0.0,
            "model.likelihood": "mixed",
            "model.hidden": (64, 64),
            "model.latent_dim": 4,
            "train.epochs": epochs,
            "train.batch_size": 64,
            "train.seed": seed,
            "train.threads": 1,
            "train.progress": False,
        }
    )
    result = vaelab.train(cfg)
    schema = table_schema(result.config.to_dict())
    rows = schema.encode(masked, missing="mask")
    filled = schema.to_frame(impute(result.model, rows, samples, torch.Generator().manual_seed(seed)))
    out: dict[str, float] = {}
    for j, c in enumerate(schema.columns):
        h = hidden[:, j]
        truth, vae = full[c.name][h], filled[c.name][h]
        seen = masked[c.name].dropna()
        if c.kind == "continuous":
            base = seen.mean()
            out[f"{c.name} vae"] = float(np.sqrt(np.mean((vae.astype(float) - truth) ** 2)))
            out[f"{c.name} mean"] = float(np.sqrt(np.mean((base - truth) ** 2)))
        else:
            base = seen.mode().iloc[0]
            out[f"{c.name} vae"] = float(np.mean(vae.to_numpy() == truth.to_numpy()))
            out[f"{c.name} mean"] = float(np.mean(truth.to_numpy() == base))
        out[f"{c.name} n"] = int(h.sum())
        out[f"{c.name} kind"] = c.kind  # type: ignore[assignment]
        out[f"{c.name} sd"] = float(full[c.name].std(ddof=0)) if c.kind == "continuous" else 0.0
    return out


def main() -> None:
    """Run every table and seed; print one table per data set (mean over seeds, and the seeds' spread)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--share", type=float, default=0.2, help="share of cells hidden (default 0.2)")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--samples", type=int, default=1000, help="K, draws of z per row when imputing")
    a = p.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.tables:
            runs = [run(name, s, a.share, a.epochs, a.samples, Path(tmp)) for s in a.seeds]
            cols = [k[: -len(" vae")] for k in runs[0] if k.endswith(" vae")]
            print(
                f"\n{name}: {a.share:.0%} of cells hidden, seeds {a.seeds}, {a.epochs} epochs, K={a.samples}"
            )
            print(f"{'column':<28} {'kind':<12} {'cells':>6}  {'VAE':>16}  {'column mean/mode':>18}  metric")
            for c in cols:
                vae = np.array([r[f"{c} vae"] for r in runs])
                base = np.array([r[f"{c} mean"] for r in runs])
                kind = runs[0][f"{c} kind"]
                metric = "RMSE (units)" if kind == "continuous" else "accuracy"
                n = sum(r[f"{c} n"] for r in runs)
                print(
                    f"{c[:28]:<28} {kind:<12} {n:>6}  {vae.mean():>9.4g} ± {vae.std():<5.2g}  "
                    f"{base.mean():>11.4g} ± {base.std():<5.2g}  {metric}"
                )
            cont = [c for c in cols if runs[0][f"{c} kind"] == "continuous"]
            ratio = np.mean([[r[f"{c} vae"] / r[f"{c} mean"] for c in cont] for r in runs], axis=1)
            print(
                f"continuous columns: VAE RMSE / mean RMSE, averaged over columns: {ratio.mean():.3f} per seed "
                f"{np.round(ratio, 3).tolist()}"
            )
    print(
        f"\n{time.perf_counter() - started:.0f} s; torch {torch.__version__}; {platform.processor() or platform.machine()}"
    )


if __name__ == "__main__":
    main()
