"""Training throughput of the 784-400-20 VAE (Kingma & Welling 2014; the PyTorch examples' MLP): vaelab
against pythae (TrainingPipeline) and Pyro (SVI, Trace_ELBO) in one run, one after the other.

Same data (full MNIST or Fashion-MNIST from --data-dir), dynamic binarization (a fresh Bernoulli draw of every
batch), batch 128, Adam 1e-3, the same thread count. Each system trains in its own process (vaelab with this
interpreter, the peers with `.venv-bench`'s, see `make bench-env`); samples/s per epoch, median over the
epochs after a warm-up, with min and max, and each process's peak RSS. The machine's speed drifts by 20-30%
over minutes, so the systems run in `--rounds` interleaved rounds (each round runs every system once, in an
order rotated per round): a ratio is the median over rounds of the paired per-round ratios, printed last.
vaelab.train flushes denormal floats to zero (`vaelab.device.flush_denormals`); the peers run as their users
run them, and once more with the same flush (`pythae:flush`, `pyro:flush`), so both comparisons are shown.

    python benchmarks/throughput.py --data-dir ../shared/data            # full run
    python benchmarks/throughput.py --data-dir ../shared/data --quick    # under a minute

The workers (`--worker NAME`) import only numpy and torch at top level, so the peers' interpreter runs this
same file without vaelab installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import ROOT, default_data_dir, load_average, peak_rss_mb, summary, write_results  # noqa: E402

PEER_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
PEERS = ("pythae", "pyro", "pythae:flush", "pyro:flush")
QUICK_IMAGES = 12_800  # 100 batches of 128


def _epochs_of(seconds: list[float], n: int) -> list[float]:
    return [n / s for s in seconds]


# --- workers: each trains one system and writes {samples_per_s per epoch, peak RSS, losses} -------------


def worker_vaelab(a: argparse.Namespace) -> dict:
    """vaelab.train on the named data set, its own loader and loop, one variant (fp32, bf16, compile)."""
    from vaelab.config import Config
    from vaelab.train import train

    variant = a.worker.split(":", 1)[1] if ":" in a.worker else "fp32"
    cfg = Config().replace(
        **{
            "data.name": a.data,
            "data.data_dir": a.data_dir,
            "data.valid_fraction": 0.0,
            "data.binarize": "dynamic",
            "data.train_limit": a.limit,
            "model.hidden": (400,),
            "model.latent_dim": 20,
            "train.batch_size": a.batch_size,
            "train.lr": 1e-3,
            "train.optimizer": "adam",
            "train.epochs": a.epochs,
            "train.threads": a.threads,
            "train.progress": False,
            "train.seed": a.seed,
            "train.precision": "bf16" if variant == "bf16" else "fp32",
            "train.compile": variant == "compile",
        }
    )
    res = train(cfg)
    h = res.history
    return {
        "samples_per_s": [r["samples_per_s"] for r in h],
        "train_loss_nats": [-r["train_elbo"] for r in h],
        "test_elbo_nats": [r["test_elbo"] for r in h],
        "threads": __import__("torch").get_num_threads(),
    }


def _peer_images(a: argparse.Namespace):
    import numpy as np
    import torch

    images = torch.from_numpy(np.load(a.images))
    return images.float().div_(255.0)


def worker_pythae(a: argparse.Namespace) -> dict:
    """pythae 0.1.2's VAE and TrainingPipeline; the model's forward binarizes each batch afresh."""
    import torch
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback
    from torch import nn

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(784, 400), nn.ReLU())
            self.mu, self.log_var = nn.Linear(400, 20), nn.Linear(400, 20)

        def forward(self, x):
            h = self.body(x.reshape(x.shape[0], -1))
            return ModelOutput(embedding=self.mu(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(-1, 1, 28, 28))

    class DynamicVAE(VAE):
        def forward(self, inputs, **kwargs):
            inputs["data"] = torch.bernoulli(inputs["data"])
            return super().forward(inputs, **kwargs)

    class Timer(TrainingCallback):
        def __init__(self) -> None:
            self.seconds, self.losses, self.began = [], [], 0.0

        def on_epoch_begin(self, training_config, **kwargs):
            self.began = time.perf_counter()

        def on_epoch_end(self, training_config, **kwargs):
            self.seconds.append(time.perf_counter() - self.began)

        def on_log(self, training_config, logs, **kwargs):
            self.losses.append(float(logs["train_epoch_loss"]))

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = _peer_images(a)
    model = DynamicVAE(
        VAEConfig(input_dim=(1, 28, 28), latent_dim=20, reconstruction_loss="bce"),
        encoder=Encoder(),
        decoder=Decoder(),
    )
    timer = Timer()
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(
            output_dir=out,
            num_epochs=a.epochs,
            learning_rate=1e-3,
            per_device_train_batch_size=a.batch_size,
            optimizer_cls="Adam",
            steps_saving=None,
            no_cuda=True,
            seed=a.seed,
        )
        TrainingPipeline(model=model, training_config=config)(train_data=x, callbacks=[timer])
    return {
        "samples_per_s": _epochs_of(timer.seconds, len(x)),
        "train_loss_nats": timer.losses,
        "threads": torch.get_num_threads(),
    }


def worker_pyro(a: argparse.Namespace) -> dict:
    """Pyro's VAE as in its tutorial: model and guide, SVI with Trace_ELBO and pyro.optim.Adam."""
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import SVI, Trace_ELBO
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(784, 400), nn.ReLU())
            self.loc, self.log_scale = nn.Linear(400, 20), nn.Linear(400, 20)

        def forward(self, x):
            h = self.body(x)
            return self.loc(h), self.log_scale(h).exp()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    pyro.set_rng_seed(a.seed)
    pyro.enable_validation(False)  # the fastest setting Pyro offers
    encoder = Encoder()
    decoder = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 20), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z), validate_args=False).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), loss=Trace_ELBO())
    x = _peer_images(a).reshape(-1, 784)
    g = torch.Generator().manual_seed(a.seed)
    seconds, losses = [], []
    for _ in range(a.epochs):
        began, total = time.perf_counter(), 0.0
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), a.batch_size):
            total += svi.step(torch.bernoulli(x[order[start : start + a.batch_size]]))
        seconds.append(time.perf_counter() - began)
        losses.append(total / len(x))
    return {
        "samples_per_s": _epochs_of(seconds, len(x)),
        "train_loss_nats": losses,
        "threads": torch.get_num_threads(),
    }


WORKERS = {"vaelab": worker_vaelab, "pythae": worker_pythae, "pyro": worker_pyro}


def run_worker(a: argparse.Namespace) -> None:
    name, _, variant = a.worker.partition(":")
    if variant == "flush":  # a peer given the denormal flush vaelab.train sets for itself
        import torch

        torch.set_flush_denormal(True)
    out = WORKERS[name](a)
    out["peak_rss_mb"] = peak_rss_mb()
    Path(a.result).write_text(json.dumps(out), encoding="utf-8")


# --- the harness ---------------------------------------------------------------------------------------


def spawn(name: str, python: str, a: argparse.Namespace, images: str, tmp: str, log: Path) -> dict:
    """Run one worker in a fresh process with `threads` threads; its result, or {'error': ...}."""
    result = Path(tmp, f"{name.replace(':', '-')}.json")
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--result",
        str(result),
        "--images",
        images,
    ]
    cmd += [
        "--data",
        a.data,
        "--data-dir",
        a.data_dir,
        "--epochs",
        str(a.epochs),
        "--threads",
        str(a.threads),
    ]
    cmd += ["--batch-size", str(a.batch_size), "--seed", str(a.seed), "--limit", str(a.limit)]
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
    out["wall_seconds"] = time.perf_counter() - began
    return out


def rotated(items: list[str], r: int) -> list[str]:
    """The running order of round r: the list rotated by r, so no system always runs first or last."""
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


def pooled(rounds: list[dict], warmup: int) -> dict:
    """One system's rounds as one result: samples/s of every post-warm-up epoch, the largest peak RSS, the
    last round's losses; an error if every round failed."""
    good = [r for r in rounds if "error" not in r]
    if not good:
        return {"error": rounds[-1]["error"] if rounds else "not run"}
    out = dict(good[-1])
    out["samples_per_s"] = [x for r in good for x in r["samples_per_s"][warmup:]]
    out["summary"] = summary(out["samples_per_s"], "samples/s")
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in good)
    out["round_medians"] = [r["median"] for r in good]
    return out


def paired_ratios(ours: list[dict], peer: list[dict]) -> list[float]:
    """Per round, our median samples/s over the peer's from the same round (rounds where both ran)."""
    return [o["median"] / p["median"] for o, p in zip(ours, peer) if "median" in o and "median" in p]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="mnist", choices=("mnist", "fashion-mnist"))
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument(
        "--epochs", type=int, default=3, help="epochs per system and round; the first is the warm-up"
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds: every system once per round")
    p.add_argument("--warmup", type=int, default=1, help="epochs left out of the statistics")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default="fp32,bf16", help="vaelab variants: fp32, bf16, compile")
    p.add_argument(
        "--peers",
        default=",".join(PEERS),
        help="pythae, pyro as their users run them; NAME:flush with denormals flushed to zero (empty: none)",
    )
    p.add_argument("--peer-python", default=str(PEER_PYTHON))
    p.add_argument("--quick", action="store_true", help=f"{QUICK_IMAGES} images, 3 epochs, fp32 only")
    p.add_argument("--limit", type=int, default=0, help="train on the first N images (0: all)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--images", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        run_worker(a)
        return 0
    if a.quick:
        a.epochs, a.rounds, a.limit, a.variants = 3, 1, a.limit or QUICK_IMAGES, "fp32"
    if a.rounds < 1 or a.epochs <= a.warmup:
        print("throughput: error: need --rounds >= 1 and --epochs > --warmup", file=sys.stderr)
        return 2
    a.data_dir = str(Path(a.data_dir).resolve())  # the workers run in a temporary folder

    import numpy as np

    from vaelab.config import DataConfig
    from vaelab.data import load_data
    from vaelab.errors import VaelabError

    try:
        data = load_data(
            DataConfig(name=a.data, data_dir=a.data_dir, valid_fraction=0.0, train_limit=a.limit)
        )
    except VaelabError as e:
        print(f"throughput: error: {e}", file=sys.stderr)
        return 1
    n = len(data.train.images)
    systems = [f"vaelab:{v}" for v in a.variants.split(",") if v]
    peers = [x for x in a.peers.split(",") if x]
    unknown = [
        x
        for x in peers
        if x.partition(":")[0] not in ("pythae", "pyro") or x.partition(":")[2] not in ("", "flush")
    ]
    if unknown:
        print(
            f"throughput: error: unknown peer {unknown[0]!r}; use pythae, pyro, pythae:flush, pyro:flush",
            file=sys.stderr,
        )
        return 2
    if peers and not Path(a.peer_python).is_file():
        print(f"note: {a.peer_python} missing (make bench-env); the peers are skipped", file=sys.stderr)
        peers = []
    systems += peers
    load_before = load_average()
    print(
        f"{a.data}: {n} training images, batch {a.batch_size}, {a.threads} threads, {a.rounds} round(s) of "
        f"{a.epochs} epochs per system ({a.warmup} warm-up); load average {load_before}"
    )
    runs: dict[str, list[dict]] = {name: [] for name in systems}
    with tempfile.TemporaryDirectory(prefix="vaelab-throughput-") as tmp:
        log = Path(tmp, "workers.log")
        images = str(Path(tmp, "train-images.npy"))
        np.save(images, data.train.images.numpy())
        for r in range(a.rounds):
            for name in rotated(systems, r):
                python = sys.executable if name.startswith("vaelab") else a.peer_python
                res = spawn(name, python, a, images, tmp, log)
                runs[name].append(res)
                if "error" in res:
                    print(f"round {r + 1} {name:16s} failed: {res['error']}")
                    continue
                res["median"] = statistics.median(res["samples_per_s"][a.warmup :])
                print(f"round {r + 1} {name:16s} {res['median']:9.0f} samples/s")
    results = {name: pooled(rs, a.warmup) for name, rs in runs.items()}
    for name, res in results.items():
        if "error" in res:
            continue
        s = res["summary"]
        extra = f", test ELBO {res['test_elbo_nats'][-1]:.2f}" if "test_elbo_nats" in res else ""
        print(
            f"{name:16s} {s['median']:9.0f} samples/s (min {s['min']:.0f}, max {s['max']:.0f}), "
            f"peak RSS {res['peak_rss_mb']:.0f} MB, train loss {res['train_loss_nats'][-1]:.2f} nats{extra}"
        )
    ratios, ratio_spread = {}, {}
    for ours in (s for s in results if s.startswith("vaelab") and "summary" in results[s]):
        for peer in (s for s in peers if "summary" in results.get(s, {})):
            paired = paired_ratios(runs[ours], runs[peer])
            ratios[f"{ours} / {peer}"] = statistics.median(paired)
            ratio_spread[f"{ours} / {peer}"] = paired
    load_after = load_average()
    figures = {
        name: {
            "samples_per_s": res.get("summary"),
            "round_medians": {"values": res.get("round_medians"), "unit": "samples/s"},
            "peak_rss": {"value": res.get("peak_rss_mb"), "unit": "MB"},
            "train_loss_per_epoch": {"values": res.get("train_loss_nats"), "unit": "nats per image"},
            **(
                {"test_elbo_per_epoch": {"values": res["test_elbo_nats"], "unit": "nats per image"}}
                if "test_elbo_nats" in res
                else {}
            ),
            **({"error": res["error"]} if "error" in res else {}),
        }
        for name, res in results.items()
    }
    figures["ratios"] = {
        "values": ratios,
        "per_round": ratio_spread,
        "unit": "median over rounds of (round's median samples/s over the peer's in the same round)",
    }
    setting = {
        "model": "VAE 784-400-20, ReLU MLP, Bernoulli decoder (logits), N(0, I) prior",
        "data": a.data,
        "split": "train",
        "train_images": n,
        "binarization": "dynamic (fresh draw per batch)",
        "batch_size": a.batch_size,
        "optimizer": "Adam",
        "lr": 1e-3,
        "epochs": a.epochs,
        "rounds": a.rounds,
        "warmup_epochs": a.warmup,
        "repetitions": a.rounds * (a.epochs - a.warmup),
        "threads": a.threads,
        "seed": a.seed,
        "quick": a.quick,
        "peers": {
            "pythae": "0.1.2 TrainingPipeline",
            "pyro": "pyro-ppl SVI Trace_ELBO, validation off",
            ":flush": "the same peer with torch.set_flush_denormal(True), as vaelab.train runs",
        },
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    path = write_results("throughput", setting, figures, threads=a.threads)
    print(f"load average after: {load_after}; results: {path.relative_to(ROOT)}")
    for k, r in ratios.items():
        spread = ratio_spread[k]
        print(f"ratio {k}: {r:.2f}x (rounds: {', '.join(f'{x:.2f}' for x in spread)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
