"""Evaluation speed of the 784-400-20 VAE (configs/pytorch-examples.yaml) on MNIST, in one run:

(a) importance sampling with K=5000 over the 10,000 test images through `vaelab.evaluate`: time and peak
    RSS (issue 3's targets: under 5 minutes on 2 cores, under 2 GB);
(b) AIS with T=1000, C=16 (L=10 leapfrog steps, sigmoid schedule) on the first N test images: time, and
    time per image;
(c) IS throughput (image-samples per second) of `vaelab.evaluate` against pythae's `VAE.get_nll` on the
    same weights (vaelab's trained weights loaded into a pythae VAE of the same architecture: its encoder
    returns log-variance 2 log(softplus(raw) + 1e-5), its decoder sigmoid(logits)) and the same binarized
    test images, with the same K and thread count. Both estimates of log p(x) are recorded as a check that
    the weights map. The ratio is printed last.

The model is trained here for --epochs epochs on full MNIST (speed does not depend on how well it is
trained; the epochs and test ELBO are recorded), or reused with --run. Each measurement runs in a fresh
process (vaelab with this interpreter, pythae with `.venv-bench`'s), so peak RSS is that of the measurement.
With --nproc N > 1, (a) is measured a second time through `vaelab eval --nproc N` and (b) runs through it.

    python benchmarks/eval_speed.py --data-dir ../shared/data                          # full run
    python benchmarks/eval_speed.py --data-dir ../shared/data --nproc 2 --ais-images 200  # + 2 processes
    python benchmarks/eval_speed.py --run runs/pytorch-examples --ais-images 200         # reuse a trained run
    python benchmarks/eval_speed.py --quick                                              # under a minute

Results: `benchmarks/results/eval_speed.json`. The workers (`--worker NAME`) import only numpy and torch at
top level, so the peers' interpreter runs this same file without vaelab installed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import ROOT, default_data_dir, figure, load_average, peak_rss_mb, write_results  # noqa: E402

PEER_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
CONFIG = ROOT / "configs" / "pytorch-examples.yaml"
MIN_SCALE = 1e-5  # vaelab.models.vae.MIN_SCALE: q's standard deviation is softplus(raw) + MIN_SCALE
QUICK = {
    "train_limit": 2000,
    "epochs": 1,
    "importance": 100,
    "is_images": 500,
    "ais": 20,
    "chains": 4,
    "ais_images": 8,
    "compare_k": 100,
    "compare_images": 50,
}


def throughput(images: int, samples: int, seconds: float) -> float:
    """Image-samples per second: images * K / seconds."""
    return images * samples / seconds if seconds > 0 else float("nan")


def peer_log_covariance(raw: Any) -> Any:
    """The log-variance the peer's encoder returns for vaelab's raw scale output: 2 log(softplus(raw) + 1e-5)."""
    import torch
    import torch.nn.functional as F

    return 2 * torch.log(F.softplus(raw) + MIN_SCALE)


def split_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """vaelab's VAE state dict as the state dicts of the peer's encoder (`net`, `head`) and decoder (`net`)."""
    enc, dec = {}, {}
    for k, v in state.items():
        if k.startswith("encoder."):
            enc[k[len("encoder.") :]] = v
        elif k.startswith("head."):
            enc[k] = v
        elif k.startswith("decoder."):
            dec[k[len("decoder.") :]] = v
        else:
            raise ValueError(f"unexpected parameter {k!r}: not the MLP VAE of configs/pytorch-examples.yaml")
    return enc, dec


# --- workers: each measures one thing in a fresh process and writes a JSON result ---------------------


def _rss_children_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def _evaluate(a: argparse.Namespace, **kw: Any) -> tuple[dict, float]:
    """`vaelab.evaluate(run, **kw)` in this process, or `vaelab eval --nproc N` when --nproc > 1; (result, wall s)."""
    began = time.perf_counter()
    if a.nproc > 1:
        out = Path(a.result).with_suffix(".eval.json")
        cmd = [sys.executable, "-m", "vaelab", "eval", a.run, "--seed", str(a.seed), "--checkpoint", "last"]
        cmd += ["--nproc", str(a.nproc), "--threads", str(max(1, a.threads // a.nproc)), "--quiet"]
        cmd += ["--out", str(out), "--importance", str(kw["importance"])]
        if kw.get("limit"):
            cmd += ["--limit", str(kw["limit"])]
        if kw.get("ais"):
            cmd += ["--ais", str(kw["ais"]), "--chains", str(kw["chains"])]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        r = json.loads(out.read_text(encoding="utf-8"))
    else:
        import torch

        from vaelab import evaluate

        torch.set_num_threads(a.threads)
        r = evaluate(a.run, seed=a.seed, which="last", **kw)
    return r, time.perf_counter() - began


def worker_importance(a: argparse.Namespace) -> dict:
    """`vaelab.evaluate(run, importance=K, limit=N)`; with --nproc > 1, `vaelab eval --nproc` (its eval.json)."""
    r, wall = _evaluate(a, importance=a.k, limit=a.images or None)
    i = r["importance"]
    return {
        "importance_seconds": i["seconds"],
        "evaluate_seconds": r["seconds"],
        "wall_seconds": wall,
        "num_images": i["num_images"],
        "num_samples": i["num_samples"],
        "log_px": i["log_px"],
        "stderr": i["stderr"],
        "ess_mean": i["ess_mean"],
        "elbo": r["elbo"]["estimate"],
        "processes": a.nproc,
        "peak_rss_children_mb": _rss_children_mb(),
    }


def worker_ais(a: argparse.Namespace) -> dict:
    """`vaelab.evaluate(run, ais=T, chains=C, limit=N)` (with the cheapest IS, K=1, that evaluate always runs)."""
    r, wall = _evaluate(a, importance=1, ais=a.steps, chains=a.chains, limit=a.images)
    s = r["ais"]
    return {
        "ais_seconds": s["seconds"],
        "wall_seconds": wall,
        "num_images": s["num_images"],
        "steps": s["steps"],
        "chains": s["chains"],
        "leapfrog": s["leapfrog"],
        "schedule": s["schedule"],
        "log_px": s["log_px"],
        "stderr": s["stderr"],
        "acceptance": s["acceptance"],
        "chain_spread": s["chain_spread"],
        "processes": a.nproc,
    }


def worker_pythae(a: argparse.Namespace) -> dict:
    """pythae 0.1.2's `VAE.get_nll(data, n_samples=K, batch_size=B)` with vaelab's weights, under no_grad."""
    import numpy as np
    import torch
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from torch import nn

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(784, 400), nn.ReLU())
            self.head = nn.Linear(400, 40)

        def forward(self, x):
            loc, raw = self.head(self.net(x.reshape(x.shape[0], -1))).chunk(2, dim=-1)
            return ModelOutput(embedding=loc, log_covariance=peer_log_covariance(raw))

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(-1, 1, 28, 28))

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    weights = np.load(a.weights)
    enc_state, dec_state = split_state({k: torch.from_numpy(weights[k]) for k in weights.files})
    encoder, decoder = Encoder(), Decoder()
    encoder.load_state_dict(enc_state)
    decoder.load_state_dict(dec_state)
    model = VAE(
        VAEConfig(input_dim=(1, 28, 28), latent_dim=20, reconstruction_loss="bce"),
        encoder=encoder,
        decoder=decoder,
    ).eval()
    x = torch.from_numpy(np.load(a.images_file))
    began = time.perf_counter()
    with torch.no_grad():
        log_px = model.get_nll(x, n_samples=a.k, batch_size=a.pythae_batch_size)
    seconds = time.perf_counter() - began
    return {
        "seconds": seconds,
        "num_images": len(x),
        "num_samples": a.k,
        "log_px": float(log_px),
        "batch_size": a.pythae_batch_size,
    }


WORKERS = {"importance": worker_importance, "ais": worker_ais, "pythae": worker_pythae}


def run_worker(a: argparse.Namespace) -> None:
    out = WORKERS[a.worker](a)
    out["peak_rss_mb"] = peak_rss_mb()
    Path(a.result).write_text(json.dumps(out), encoding="utf-8")


def spawn(name: str, python: str, args: list[str], a: argparse.Namespace, tmp: str, log: Path) -> dict:
    """Run worker `name` in a fresh process with `a.threads` threads; its result, or {'error': ...}."""
    result = Path(tmp, f"{name}-{time.monotonic_ns()}.json")
    cmd = [python, str(Path(__file__).resolve()), "--worker", name, "--result", str(result)]
    cmd += ["--threads", str(a.threads), "--seed", str(a.seed), *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    began = time.perf_counter()
    with log.open("a", encoding="utf-8") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    if proc.returncode != 0 or not result.is_file():
        tail = " | ".join(log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:])
        return {"error": f"exit code {proc.returncode}: {tail[-400:]}"}
    out = json.loads(result.read_text(encoding="utf-8"))
    out["process_wall_seconds"] = time.perf_counter() - began
    return out


# --- the harness ---------------------------------------------------------------------------------------


def train_model(a: argparse.Namespace, out: Path) -> dict:
    """Train configs/pytorch-examples.yaml's VAE for a.epochs epochs on MNIST into `out`."""
    import torch

    from vaelab.config import build_config
    from vaelab.train import train

    flat: dict[str, Any] = {
        "data.data_dir": a.data_dir,
        "train.epochs": a.epochs,
        "train.threads": a.threads,
        "train.progress": False,
        "train.seed": a.seed,
    }
    if a.quick:
        flat["data.train_limit"] = QUICK["train_limit"]
    cfg = build_config(CONFIG, flat)
    began = time.perf_counter()
    res = train(cfg, out=out, overwrite=True)
    last = res.history[-1]
    return {
        "config": str(CONFIG.relative_to(ROOT)),
        "epochs": last["epoch"],
        "train_images": cfg.data.train_limit or 60_000,
        "seconds": time.perf_counter() - began,
        "test_elbo": last.get("test_elbo"),
        "threads": torch.get_num_threads(),
    }


def export_for_peer(run: str, images: int, tmp: str) -> tuple[str, str, dict]:
    """The run's weights (.npz) and its first `images` binarized test images (.npy, float32) for the peer."""
    import numpy as np

    from vaelab.data import prepare_split
    from vaelab.train.checkpoint import config_of, read_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(run, "last")
    ck = read_checkpoint(path)
    cfg = config_of(ck, path)
    m = cfg.model
    if (m.name, m.body, tuple(m.hidden), m.activation, m.latent_dim, m.likelihood) != (
        "vae",
        "mlp",
        (400,),
        "relu",
        20,
        "bernoulli",
    ) or tuple(ck["shape"]) != (1, 28, 28):
        raise SystemExit(
            f"eval_speed: {run} is not the 784-400-20 ReLU Bernoulli VAE; pythae's model cannot take its weights"
        )
    weights = str(Path(tmp, "weights.npz"))
    np.savez(weights, **{k: v.detach().cpu().numpy() for k, v in ck["model"].items()})
    data = prepare_split(cfg.data, "test")
    x = data.batch(slice(0, min(images, len(data)))).numpy()
    images_file = str(Path(tmp, "test-images.npy"))
    np.save(images_file, x)
    return weights, images_file, {"data": cfg.data.name, "test_images": len(data), "epoch": ck.get("epoch")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--run", default=None, help="a trained 784-400-20 VAE run folder (default: train one)")
    p.add_argument("--runs-dir", default=None, help="keep the trained run here (default: a temporary folder)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs when no --run is given")
    p.add_argument("--importance", type=int, default=5000, metavar="K", help="(a) IS proposals per image")
    p.add_argument("--is-images", type=int, default=0, help="(a) first N test images (0: all 10,000)")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="N > 1: (a) also, and (b) only, through `vaelab eval --nproc N` (threads / N threads each)",
    )
    p.add_argument("--ais", type=int, default=1000, metavar="T", help="(b) AIS intermediate distributions")
    p.add_argument("--chains", type=int, default=16, metavar="C", help="(b) AIS chains per image")
    p.add_argument("--ais-images", type=int, default=1000, help="(b) first N test images (0: skip AIS)")
    p.add_argument("--compare-k", type=int, default=1000, help="(c) K for the comparison with pythae")
    p.add_argument("--compare-images", type=int, default=1000, help="(c) first N test images")
    p.add_argument(
        "--pythae-batch-size", type=int, default=100, help="(c) get_nll's batch_size (its default)"
    )
    p.add_argument("--peer-python", default=str(PEER_PYTHON))
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny K, T and image counts: under a minute")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, help=argparse.SUPPRESS)
    p.add_argument("--images", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--images-file", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        run_worker(a)
        return 0
    if a.quick:
        a.epochs, a.importance, a.is_images = QUICK["epochs"], QUICK["importance"], QUICK["is_images"]
        a.ais, a.chains, a.ais_images = QUICK["ais"], QUICK["chains"], QUICK["ais_images"]
        a.compare_k, a.compare_images = QUICK["compare_k"], QUICK["compare_images"]
    a.data_dir = str(Path(a.data_dir).resolve())  # the workers run in a temporary folder
    load_before = load_average()
    figures: dict[str, Any] = {}
    tmp_runs = tempfile.TemporaryDirectory(prefix="vaelab-eval-speed-") if a.run is None else None
    with tempfile.TemporaryDirectory(prefix="vaelab-eval-speed-work-") as tmp:
        log = Path(tmp, "workers.log")
        if a.run is None:
            root = Path(a.runs_dir) if a.runs_dir else Path(tmp_runs.name)
            a.run = str((root / "pytorch-examples").resolve())
            print(
                f"training the 784-400-20 VAE for {a.epochs} epoch(s) on MNIST ({a.threads} threads)",
                flush=True,
            )
            figures["training"] = train_model(a, Path(a.run))
            t = figures["training"]
            print(f"trained {t['epochs']} epoch(s) in {t['seconds']:.0f} s, test ELBO {t['test_elbo']:.2f}")
        else:
            a.run = str(Path(a.run).resolve())
            figures["training"] = {"reused_run": a.run}
        weights, images_file, data_info = export_for_peer(a.run, a.compare_images, tmp)
        figures["training"].update(data_info)

        # (a) IS with K over the test images
        rows = ["--run", a.run, "--k", str(a.importance), "--images", str(a.is_images)]
        res = spawn("importance", sys.executable, [*rows, "--nproc", "1"], a, tmp, log)
        figures["importance"] = _importance_figures(res, 300.0, 2048.0)
        _print_importance("(a) IS", res)
        if a.nproc > 1:
            res = spawn("importance", sys.executable, [*rows, "--nproc", str(a.nproc)], a, tmp, log)
            figures["importance_nproc"] = _importance_figures(res, 300.0, 2048.0)
            _print_importance(f"(a) IS, vaelab eval --nproc {a.nproc}", res)

        # (b) AIS
        if a.ais_images > 0:
            args = [
                "--run",
                a.run,
                "--steps",
                str(a.ais),
                "--chains",
                str(a.chains),
                "--images",
                str(a.ais_images),
                "--nproc",
                str(a.nproc),
            ]
            res = spawn("ais", sys.executable, args, a, tmp, log)
            if "error" in res:
                print(f"(b) AIS failed: {res['error']}")
                figures["ais"] = {"error": res["error"]}
            else:
                per = res["ais_seconds"] / res["num_images"]
                figures["ais"] = {
                    **{
                        k: res[k]
                        for k in ("num_images", "steps", "chains", "leapfrog", "schedule", "processes")
                    },
                    "seconds": figure(res["ais_seconds"], "s"),
                    "seconds_per_image": figure(per, "s"),
                    "log_px": figure(res["log_px"], "nats per image"),
                    "stderr": figure(res["stderr"], "nats per image"),
                    "acceptance": res["acceptance"],
                    "chain_spread": res["chain_spread"],
                    "peak_rss": figure(res["peak_rss_mb"], "MB"),
                }
                print(
                    f"(b) AIS T={res['steps']}, C={res['chains']}, L={res['leapfrog']} on {res['num_images']} "
                    f"images, {a.nproc} process(es): {res['ais_seconds']:.1f} s ({per:.2f} s per image), log p(x) "
                    f"{res['log_px']:.2f} +- {res['stderr']:.2f}, acceptance {res['acceptance']:.2f}",
                    flush=True,
                )

        # (c) the same K and images through vaelab.evaluate and pythae's get_nll
        rows = ["--run", a.run, "--k", str(a.compare_k), "--images", str(a.compare_images), "--nproc", "1"]
        ours = spawn("importance", sys.executable, rows, a, tmp, log)
        peer: dict = {"error": f"{a.peer_python} missing (make bench-env)"}
        if Path(a.peer_python).is_file():
            args = ["--weights", weights, "--images-file", images_file, "--k", str(a.compare_k)]
            args += ["--pythae-batch-size", str(a.pythae_batch_size)]
            peer = spawn("pythae", a.peer_python, args, a, tmp, log)
        figures["comparison"] = _comparison(ours, peer, a)
    if tmp_runs is not None:
        tmp_runs.cleanup()
    load_after = load_average()
    setting = {
        "model": "VAE 784-400-20, ReLU MLP, Bernoulli decoder (logits), N(0, I) prior (configs/pytorch-examples.yaml)",
        "data": "mnist test split, binarized by one fixed Bernoulli draw (data.binarize_seed 0 + 1)",
        "importance": {"K": a.importance, "images": a.is_images or 10_000, "seed": a.seed},
        "ais": {
            "T": a.ais,
            "C": a.chains,
            "L": 10,
            "schedule": "sigmoid",
            "images": a.ais_images,
            "processes": a.nproc,
        },
        "comparison": {
            "K": a.compare_k,
            "images": a.compare_images,
            "pythae": f"pythae 0.1.2 VAE.get_nll(data, n_samples=K, batch_size={a.pythae_batch_size}) under "
            "torch.no_grad, vaelab's weights; throughput = images * K / seconds of the estimator call alone",
        },
        "threads": a.threads,
        "quick": a.quick,
        "targets": "issue 3: IS K=5000 on 10,000 test images in under 5 min on 2 cores, under 2 GB",
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    path = write_results("eval_speed", setting, figures, threads=a.threads)
    print(f"load average before {load_before}, after {load_after}; results: {path.relative_to(ROOT)}")
    ratio = figures["comparison"].get("ratio")
    if ratio is not None:
        c = figures["comparison"]
        print(
            f"ratio IS throughput vaelab.evaluate / pythae get_nll (same weights, first {c['num_images']} test "
            f"images, K={c['num_samples']}, {a.threads} threads): {ratio:.2f}x"
        )
    else:
        print(f"ratio: not measured ({figures['comparison'].get('error')})")
    return 0


def _importance_figures(res: dict, time_target: float, memory_target: float) -> dict:
    if "error" in res:
        return {"error": res["error"]}
    rss = max(res["peak_rss_mb"], res["peak_rss_children_mb"])
    return {
        "num_images": res["num_images"],
        "num_samples": res["num_samples"],
        "processes": res["processes"],
        "seconds": figure(res["importance_seconds"], "s"),
        "evaluate_seconds": figure(res["evaluate_seconds"], "s"),
        "samples_per_s": figure(
            throughput(res["num_images"], res["num_samples"], res["importance_seconds"]), "image-samples/s"
        ),
        "peak_rss": figure(rss, "MB (largest process)"),
        "log_px": figure(res["log_px"], "nats per image"),
        "stderr": figure(res["stderr"], "nats per image"),
        "ess_mean": res["ess_mean"],
        "elbo": figure(res["elbo"], "nats per image"),
        "under_5_minutes": res["importance_seconds"] < time_target,
        "under_2_gb": rss < memory_target,
    }


def _print_importance(label: str, res: dict) -> None:
    if "error" in res:
        print(f"{label} failed: {res['error']}", flush=True)
        return
    rss = max(res["peak_rss_mb"], res["peak_rss_children_mb"])
    rate = throughput(res["num_images"], res["num_samples"], res["importance_seconds"])
    print(
        f"{label} K={res['num_samples']} on {res['num_images']} test images: {res['importance_seconds']:.1f} s "
        f"({rate:,.0f} image-samples/s), peak RSS {rss:.0f} MB, log p(x) {res['log_px']:.2f} +- "
        f"{res['stderr']:.2f}",
        flush=True,
    )


def _comparison(ours: dict, peer: dict, a: argparse.Namespace) -> dict:
    out: dict[str, Any] = {"num_images": a.compare_images, "num_samples": a.compare_k}
    if "error" in ours:
        print(f"(c) vaelab failed: {ours['error']}")
        return {**out, "error": f"vaelab: {ours['error']}"}
    ours_rate = throughput(ours["num_images"], ours["num_samples"], ours["importance_seconds"])
    out["vaelab"] = {
        "seconds": figure(ours["importance_seconds"], "s"),
        "samples_per_s": figure(ours_rate, "image-samples/s"),
        "log_px": figure(ours["log_px"], "nats per image"),
        "peak_rss": figure(ours["peak_rss_mb"], "MB"),
    }
    print(
        f"(c) vaelab.evaluate K={a.compare_k} on {ours['num_images']} images: {ours['importance_seconds']:.1f} s "
        f"({ours_rate:,.0f} image-samples/s), log p(x) {ours['log_px']:.2f}",
        flush=True,
    )
    if "error" in peer:
        print(f"(c) pythae: {peer['error']}")
        return {**out, "error": f"pythae: {peer['error']}"}
    peer_rate = throughput(peer["num_images"], peer["num_samples"], peer["seconds"])
    out["pythae"] = {
        "seconds": figure(peer["seconds"], "s"),
        "samples_per_s": figure(peer_rate, "image-samples/s"),
        "log_px": figure(peer["log_px"], "nats per image"),
        "peak_rss": figure(peer["peak_rss_mb"], "MB"),
        "batch_size": peer["batch_size"],
    }
    out["log_px_difference"] = figure(ours["log_px"] - peer["log_px"], "nats per image (vaelab - pythae)")
    out["ratio"] = ours_rate / peer_rate
    print(
        f"(c) pythae get_nll K={a.compare_k} on {peer['num_images']} images: {peer['seconds']:.1f} s "
        f"({peer_rate:,.0f} image-samples/s), log p(x) {peer['log_px']:.2f} "
        f"(vaelab - pythae: {ours['log_px'] - peer['log_px']:+.3f} nats on the same weights)",
        flush=True,
    )
    return out


if __name__ == "__main__":
    sys.exit(main())
