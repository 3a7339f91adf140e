"""The three families of generative models on one benchmark: an autoencoder, VAEs (plain, beta, IWAE,
hierarchical, VampPrior), PixelCNN (exact likelihood) and a GAN (implicit), trained for the same CPU budget
on dynamically binarized MNIST and Fashion-MNIST and measured with the same numbers.

For each family and data set: test NLL in nats with its estimator (IS with K for the latent-variable models,
exact for PixelCNN, AIS with T under a stated Gaussian observation model for the GAN, none for the
autoencoder), Fréchet distance, precision and recall of samples on the features of vaelab's own classifier
(not Inception: its weights cannot be downloaded here), training wall and CPU time, epochs, and sampling
speed in images/s. Training runs whole epochs until the budget is spent (BENCHMARKS.md: budgets, not
epochs); the per-epoch test bound against time is kept as the curve. Published targets are printed beside
what was reached, with the gap.

    python benchmarks/families.py --data-dir ../shared/data                    # 10 min per model and data set
    python benchmarks/families.py --budget-minutes 30 --families hierarchical,vampprior --data mnist
    python benchmarks/families.py --quick                                       # a few minutes, tiny budgets

Results merge into `benchmarks/results/families.json` (one entry per data set and family, each with its own
settings, load average and time) and the table is rewritten to `benchmarks/results/families.md`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import (  # noqa: E402
    RESULTS,
    command_line,
    default_data_dir,
    git_commit,
    load_average,
    machine,
    write_results,
)


@dataclass(frozen=True)
class Family:
    """A row of the table: a registry model name and the config values that make this family."""

    model: str
    settings: dict[str, Any] = field(default_factory=dict)
    note: str = ""


MLP_2X300 = {"model.hidden": (300, 300), "model.latent_dim": 40}
# The training recipe stored with Norouzi et al. 2020's code for their 2x300 rows (gated layers throughout).
GATED_RECIPE = {
    "model.activation": "gated",
    "train.lr": 5e-4,
    "train.batch_size": 100,
    "objective.warmup_epochs": 100,
}
FAMILIES: dict[str, Family] = {
    "ae": Family("autoencoder", MLP_2X300, "deterministic autoencoder, 2x300 MLP, 40-d code"),
    "vae": Family(
        "vae",
        MLP_2X300,
        "VAE, 2x300 ReLU MLP, 40-d latent (Norouzi et al. 2020's sizes; their layers are gated: vae-gated)",
    ),
    "vae-gated": Family(
        "vae",
        {**MLP_2X300, **GATED_RECIPE},
        "VAE, 2x300 gated MLP, 40-d latent, Adam 5e-4, batch 100, KL warm-up over 100 epochs "
        "(the recipe of Norouzi et al. 2020's code)",
    ),
    "beta-vae": Family("vae", {**MLP_2X300, "objective.beta": 4.0}, "beta-VAE, beta = 4, same bodies"),
    "iwae": Family(
        "iwae",
        {
            "model.hidden": (200, 200),
            "model.activation": "tanh",
            "model.latent_dim": 50,
            "objective.num_samples": 50,
        },
        "IWAE k=50, one stochastic layer 784-200-200-50 tanh (Burda et al. 2016)",
    ),
    "hierarchical": Family(
        "hierarchical",
        {"objective.name": "iwae", "objective.num_samples": 50},
        "IWAE k=50, two stochastic layers 784-200-200-100 / 100-100-50 tanh (Burda et al. 2016)",
    ),
    "vampprior": Family("vampprior", MLP_2X300, "VampPrior, 500 pseudo-inputs, 2x300 MLP, 40-d latent"),
    "vampprior-gated": Family(
        "vampprior",
        {**MLP_2X300, **GATED_RECIPE},
        "VampPrior, 500 pseudo-inputs, 2x300 gated MLP, 40-d latent, Adam 5e-4, batch 100, KL warm-up over "
        "100 epochs (Tomczak & Welling 2018's recipe, as in Norouzi et al. 2020's code)",
    ),
    "pixelcnn": Family("pixelcnn", {}, "PixelCNN, 7x7 mask A, 6 residual blocks of 64 channels, mask B"),
    "gan": Family("gan", {}, "DCGAN, non-saturating loss, 64-d z"),
}
# Published test NLL (nats) on dynamically binarized data and the targets of issue 5 (IS with K = 5000).
PUBLISHED = {
    ("mnist", "vae"): (84.45, None, "Norouzi et al. 2020, 2x300 gated MLP, 40-d"),
    ("mnist", "vae-gated"): (84.45, None, "Norouzi et al. 2020, 2x300 gated MLP, 40-d"),
    ("mnist", "iwae"): (84.78, None, "Burda et al. 2016, 3,280 epochs"),
    ("mnist", "hierarchical"): (82.90, 83.5, "Burda et al. 2016, 3,280 epochs"),
    ("mnist", "vampprior"): (82.43, 83.0, "Norouzi et al. 2020"),
    ("mnist", "vampprior-gated"): (82.43, 83.0, "Norouzi et al. 2020, 2x300 gated MLP, 40-d"),
    ("mnist", "pixelcnn"): (81.30, None, "van den Oord et al. 2016, static binarization"),
    ("fashion-mnist", "vae"): (228.70, 229.0, "Norouzi et al. 2020, 2x300 gated MLP, 40-d"),
    ("fashion-mnist", "vae-gated"): (228.70, 229.0, "Norouzi et al. 2020, 2x300 gated MLP, 40-d"),
    ("fashion-mnist", "vampprior"): (227.35, None, "Norouzi et al. 2020"),
    ("fashion-mnist", "vampprior-gated"): (227.35, None, "Norouzi et al. 2020, 2x300 gated MLP, 40-d"),
}
QUICK = {
    "train_limit": 2000,
    "eval_images": 100,
    "importance": 100,
    "quality": 100,
    "ais": 10,
    "ais_images": 10,
}


def config_for(name: str, data: str, a: argparse.Namespace):
    """The family's config on `data`: the registry model's own defaults, then the family's, then the run's."""
    from vaelab.models.registry import MODELS, model_config

    fam = FAMILIES[name]
    if fam.model not in MODELS:
        return None
    base = model_config(fam.model)
    flat: dict[str, Any] = {
        "data.name": data,
        "data.data_dir": a.data_dir,
        "data.binarize": "dynamic",
        "data.valid_fraction": 0.0,
        "train.seed": a.seed,
        "train.threads": a.threads,
        "train.progress": False,
        "train.epochs": 1,
        **fam.settings,
    }
    if a.quick:
        flat["data.train_limit"] = QUICK["train_limit"]
        if fam.model == "pixelcnn":
            flat["model.extra"] = {"channels": 16, "blocks": 2}
    return base.replace(**flat)


def train_for_budget(cfg, out: Path, budget_s: float, max_epochs: int) -> dict[str, Any]:
    """Whole epochs in one `vaelab.train` call, stopped (through `on_epoch`) when the next epoch, as long as
    the last one, would overrun the budget."""
    import torch

    from vaelab.train import train

    start, cpu0 = time.perf_counter(), time.process_time()
    marks = [start]

    def over_budget(_: dict) -> bool:
        marks.append(time.perf_counter())
        return marks[-1] - start + (marks[-1] - marks[-2]) > budget_s

    history = train(
        cfg.replace(**{"train.epochs": max_epochs}), out=out, overwrite=True, on_epoch=over_budget
    ).history
    epochs = len(history)
    wall = time.perf_counter() - start
    stat = next((s for s in ("iwae", "elbo", "log_px", "rec") if f"test_{s}" in history[-1]), None)
    clock, curve = 0.0, []
    for r in history:
        clock += r["seconds"]
        if stat is not None:
            curve.append([round(clock, 1), r[f"test_{stat}"]])
    return {
        "epochs": epochs,
        "train_seconds": sum(r["seconds"] for r in history),
        "wall_seconds": wall,
        "cpu_seconds": time.process_time() - cpu0,
        "threads": torch.get_num_threads(),
        "curve_stat": f"test_{stat}" if stat else None,
        "curve": curve,
    }


def evaluate_run(name: str, out: Path, a: argparse.Namespace) -> dict[str, Any]:
    """NLL with the estimator that applies, and sample quality, through `vaelab.evaluate`."""
    from vaelab.evaluate import evaluate

    q = QUICK if a.quick else {}
    images = q.get("eval_images", a.eval_images)
    kw = {"limit": images, "seed": a.seed, "quality": q.get("quality", a.quality), "which": "last"}
    if name == "gan":
        kw.update(ais=q.get("ais", a.ais), chains=a.ais_chains, leapfrog=a.ais_leapfrog)
        kw["limit"] = q.get("ais_images", a.ais_images)
    else:
        kw["importance"] = q.get("importance", a.importance)
    r = evaluate(out, **kw)
    row: dict[str, Any] = {"eval_seconds": r["seconds"]}
    if "exact" in r:
        e = r["exact"]
        row["nll"] = {"value": e["nll"], "stderr": e["stderr"], "estimator": "exact (chain rule)"}
    elif "importance" in r:
        i = r["importance"]
        row["nll"] = {"value": i["nll"], "stderr": i["stderr"], "estimator": f"IS, K={i['num_samples']}"}
        row["elbo_nll_bound"] = -r["elbo"]["estimate"]
    elif "ais" in r:
        s = r["ais"]
        row["nll"] = {
            "value": s["nll"],
            "stderr": s["stderr"],
            "estimator": f"AIS, T={s['steps']}, C={s['chains']}",
            "observation_model": s.get("observation_model"),
        }
    else:
        row["nll"] = {"value": None, "estimator": "none (an autoencoder defines no p(x))"}
    row["nll"]["num_images"] = r["num_images"] if "nll" in row and row["nll"].get("value") is not None else 0
    if name == "gan":
        row["nll_bernoulli_observation"] = gan_bernoulli_ais(out, kw)
    quality = r["quality"]
    row["quality"] = {k: quality[k] for k in ("frechet_distance", "precision", "recall", "num_samples", "k")}
    row["quality"]["classifier_accuracy"] = quality["classifier"]["test_accuracy"]
    row["quality"]["samples"] = quality["samples"]
    row["sampling_images_per_s"] = quality["images_per_second"]
    row["features"] = quality["features"]
    return row


def gan_bernoulli_ais(out: Path, kw: dict[str, Any]) -> dict[str, Any]:
    """The same generator scored under p(x|z) = Bernoulli(G(z)): a mass function on binary images, so its NLL
    is in the units of the other rows (the observation model has no parameters, so no retraining)."""
    import dataclasses

    from vaelab.data import prepare_split
    from vaelab.evaluate import evaluate
    from vaelab.models.registry import build_model
    from vaelab.train.checkpoint import config_of, read_checkpoint, resolve_checkpoint

    ck = read_checkpoint(resolve_checkpoint(out, "last"))
    cfg = config_of(ck)
    model = build_model(dataclasses.replace(cfg.model, likelihood="bernoulli"), tuple(ck["shape"]))
    model.load_state_dict(ck["model"])
    test = prepare_split(cfg.data, "test")
    opts = {k: kw[k] for k in ("ais", "chains", "leapfrog", "limit", "seed")}
    s = evaluate(model, test, **opts)["ais"]
    return {
        "value": s["nll"],
        "stderr": s["stderr"],
        "estimator": f"AIS, T={s['steps']}, C={s['chains']}",
        "observation_model": s.get("observation_model"),
        "num_images": s["num_images"],
    }


def run_one(name: str, data: str, a: argparse.Namespace, root: Path) -> dict[str, Any] | None:
    cfg = config_for(name, data, a)
    if cfg is None:
        return None
    out = root / f"{data}-{name}"
    budget = (0.25 if a.quick else a.budget_minutes) * 60
    print(f"[{data} / {name}] training for up to {budget / 60:.1f} min (load {load_average()})", flush=True)
    trained = train_for_budget(cfg, out, budget, 1 if a.quick else a.max_epochs)
    print(
        f"[{data} / {name}] {trained['epochs']} epoch(s) in {trained['wall_seconds'] / 60:.1f} min; evaluating",
        flush=True,
    )
    row = {
        "family": name,
        "data": data,
        "description": FAMILIES[name].note,
        "config": cfg.to_dict(),
        "settings": {
            "quick": a.quick,
            "budget_minutes": budget / 60,
            "importance_K": QUICK["importance"] if a.quick else a.importance,
            "eval_images": QUICK["eval_images"] if a.quick else a.eval_images,
            "quality_N": QUICK["quality"] if a.quick else a.quality,
        },
        "training": trained,
        **evaluate_run(name, out, a),
        "load_average_after": load_average(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": git_commit(),
        "command": command_line(),
        "machine": machine(a.threads),
    }
    pub = PUBLISHED.get((data, name))
    if pub is not None:
        value = row["nll"]["value"]
        row["published"] = {"nll": pub[0], "target": pub[1], "source": pub[2]}
        if value is not None:
            row["published"]["gap_to_published"] = value - pub[0]
            if pub[1] is not None:
                row["published"]["gap_to_target"] = value - pub[1]
                row["published"]["target_met"] = value <= pub[1]
    return row


def _fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The README table: one line per data set and family."""
    head = (
        "| data | family | test NLL (nats) | estimator | FD | precision | recall | training | CPU, threads | "
        "sampling (images/s) | published / target |\n|" + " --- |" * 11
    )
    lines = [head]
    for r in rows:
        n = r["nll"]
        nll = _fmt(n.get("value")) + (f" ± {n['stderr']:.2f}" if n.get("value") is not None else "")
        est = n["estimator"] + (f", {n['num_images']} images" if n.get("num_images") else "")
        if "observation_model" in n:
            sigma = r["config"]["model"].get("gaussian_sigma")
            est += f" under N(G(z), {sigma}² I): a log-density on binary images, not comparable"
            b = r.get("nll_bernoulli_observation")
            if b:
                est += f"; under Bernoulli(G(z)): NLL {b['value']:.2f} ± {b['stderr']:.2f}"
        t = r["training"]
        train = f"{t['wall_seconds'] / 60:.1f} min ({t['cpu_seconds'] / 60:.0f} CPU min), {t['epochs']} ep."
        m = r.get("machine") or {}
        cpu = f"{m.get('cpu_model', '—')}, {m.get('threads', t['threads'])}"
        pub = r.get("published")
        ptxt = ""
        if pub:
            ptxt = f"{pub['nll']:.2f}" + (f" / ≤ {pub['target']:.1f}" if pub.get("target") else "")
            if "gap_to_published" in pub:
                ptxt += f" (gap {pub['gap_to_published']:+.2f})"
        q = r["quality"]
        lines.append(
            f"| {r['data']} | {r['family']} | {nll} | {est} | {_fmt(q['frechet_distance'], 1)} | "
            f"{_fmt(q['precision'])} | {_fmt(q['recall'])} | {train} | {cpu} | "
            f"{_fmt(r['sampling_images_per_s'], 0)} | {ptxt} |"
        )
    return "\n".join(lines)


def _merge(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earlier entries of families.json, replaced by this run's for the same data set and family."""
    path = RESULTS / "families.json"
    old = []
    if path.is_file():
        try:
            old = json.loads(path.read_text()).get("figures", {}).get("rows", [])
        except (OSError, ValueError):
            old = []
    keys = {(r["data"], r["family"]) for r in rows}
    merged = [r for r in old if (r["data"], r["family"]) not in keys] + rows
    order = {d: i for i, d in enumerate(("mnist", "fashion-mnist"))}
    fam = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(merged, key=lambda r: (order.get(r["data"], 9), fam.get(r["family"], 99)))


def _write(rows: list[dict[str, Any]], missing: list[str], a: argparse.Namespace) -> tuple[Path, str]:
    """Merge this run's rows into families.json and rewrite families.md."""
    merged = _merge(rows)
    setting = {
        "binarization": "dynamic for training; test: one fixed Bernoulli draw (data.binarize_seed 0 + 1)",
        "quick": a.quick,
        "budget_minutes": 0.25 if a.quick else a.budget_minutes,
        "importance_K": QUICK["importance"] if a.quick else a.importance,
        "eval_images": QUICK["eval_images"] if a.quick else a.eval_images,
        "quality_N": QUICK["quality"] if a.quick else a.quality,
        "gan_ais": {"T": a.ais, "chains": a.ais_chains, "leapfrog": a.ais_leapfrog, "images": a.ais_images},
        "seed": a.seed,
        "threads": a.threads,
        "missing": missing,
        "this_run": [f"{r['data']}/{r['family']}" for r in rows],
        "rows_note": "each row carries its own settings, load average and time; rows of earlier runs are kept",
    }
    path = write_results("families", setting, {"rows": merged}, threads=a.threads)
    table = markdown(merged)
    (RESULTS / "families.md").write_text(
        f"<!-- written by benchmarks/families.py; rows of several runs, each with its CPU -->\n{table}\n"
    )
    return path, table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--data", default="mnist,fashion-mnist", help="comma-separated data sets")
    p.add_argument(
        "--families", default=",".join(FAMILIES), help=f"comma-separated, from {', '.join(FAMILIES)}"
    )
    p.add_argument(
        "--budget-minutes", type=float, default=10.0, help="training budget per family and data set"
    )
    p.add_argument("--max-epochs", type=int, default=10_000)
    p.add_argument("--importance", type=int, default=5000, metavar="K", help="IS proposals per test image")
    p.add_argument("--eval-images", type=int, default=1000, help="first N test images for the NLL")
    p.add_argument(
        "--quality", type=int, default=500, metavar="N", help="samples (and test images) for FD, P, R"
    )
    p.add_argument("--ais", type=int, default=100, metavar="T", help="GAN: AIS intermediate distributions")
    p.add_argument("--ais-chains", type=int, default=2)
    p.add_argument("--ais-leapfrog", type=int, default=5)
    p.add_argument("--ais-images", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs-dir", default=None, help="keep the run folders here (default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="tiny budgets and evaluations: a few minutes in all")
    a = p.parse_args(argv)
    unknown = [f for f in a.families.split(",") if f not in FAMILIES]
    if unknown:
        p.error(f"unknown families {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    import torch

    torch.set_num_threads(a.threads)
    tmp = tempfile.TemporaryDirectory(prefix="vaelab-families-") if a.runs_dir is None else None
    root = Path(a.runs_dir) if a.runs_dir else Path(tmp.name)
    rows, missing = [], []
    for data in a.data.split(","):
        for name in a.families.split(","):
            row = run_one(name, data, a, root)
            if row is None:
                missing.append(f"{data}/{name} (model '{FAMILIES[name].model}' not registered)")
                continue
            rows.append(row)
            n = row["nll"]
            print(
                f"[{data} / {name}] NLL {_fmt(n.get('value'))} ({n['estimator']}), "
                f"FD {row['quality']['frechet_distance']:.1f}",
                flush=True,
            )
            _write(rows, missing, a)  # after every row: a stopped run keeps what it measured
    if tmp is not None:
        tmp.cleanup()
    path, table = _write(rows, missing, a)
    print(table)
    if missing:
        print("missing: " + "; ".join(missing))
    print(f"wrote {path} and {RESULTS / 'families.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
