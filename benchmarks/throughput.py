"""Training throughput of the 784-400-20 VAE (Kingma & Welling 2014; the PyTorch examples' MLP): vaelab
against pythae (TrainingPipeline) and Pyro (SVI, Trace_ELBO) in one run, taking turns epoch by epoch.

Same data (full MNIST or Fashion-MNIST from --data-dir), dynamic binarization (a fresh Bernoulli draw of every
batch), batch 128, Adam 1e-3, the same thread count. Each system trains in its own process (vaelab with this
interpreter, the peers with `.venv-bench`'s, see `make bench-env`); samples/s per epoch, median over the
epochs after a warm-up, with min and max, and each process's peak RSS. The machine's speed drifts by 20-30%
within minutes, so the systems take turns epoch by epoch: every worker process stays resident and waits
at each epoch's end until the harness lets it run the next one, in an order rotated every epoch. A ratio is
the median over epochs of the paired ratios (our epoch e over the peer's epoch e), printed last.
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

from common import (  # noqa: E402
    ROOT,
    default_data_dir,
    load_average,
    mlp_vae_config,
    peak_rss_mb,
    summary,
    write_results,
)

PEER_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
PEERS = ("pythae", "pyro", "pythae:flush", "pyro:flush")
QUICK_IMAGES = 12_800  # 100 batches of 128


class Gate:
    """The worker's side of the turn-taking: report an event to the harness and wait for its `go`.

    Without a report channel (a worker run by hand) it never waits."""

    def __init__(self, fd: int) -> None:
        self.out = os.fdopen(fd, "w", buffering=1) if fd >= 0 else None

    def __call__(self, event: str) -> None:
        if self.out is None:
            return
        self.out.write(event + "\n")
        self.out.flush()
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("throughput worker: the harness went away")


GATE = Gate(-1)


def _epochs_of(seconds: list[float], n: int) -> list[float]:
    return [n / s for s in seconds]


# --- workers: each trains one system and writes {samples_per_s per epoch, peak RSS, losses} -------------


def worker_vaelab(a: argparse.Namespace) -> dict:
    """vaelab.train on the named data set, its own loader and loop, one variant (fp32, bf16, compile)."""
    from vaelab.train import train

    variant = a.worker.split(":", 1)[1] if ":" in a.worker else "fp32"
    cfg = mlp_vae_config(
        a.data,
        a.data_dir,
        limit=a.limit,
        epochs=a.epochs,
        threads=a.threads,
        seed=a.seed,
        batch_size=a.batch_size,
        precision="bf16" if variant == "bf16" else "fp32",
        compile=variant == "compile",
    )
    GATE("ready")
    res = train(cfg, on_epoch=lambda _: GATE("epoch"))
    h = res.history
    return {
        "samples_per_s": [r["samples_per_s"] for r in h],
        "train_loss_nats": [-r["train_elbo"] for r in h],
        "test_elbo_nats": [r["test_elbo"] for r in h],
        "threads": __import__("torch").get_num_threads(),
    }


def worker_floor(a: argparse.Namespace) -> dict:
    """The floor (`roofline.floor_step`): only the step's unavoidable work, epoch by epoch on the real data."""
    import torch

    from roofline import floor_step

    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)  # as vaelab.train runs
    a.hidden, a.latent = 400, 20
    run, steps = floor_step(a)
    seconds = []
    GATE("ready")
    for _ in range(a.epochs):
        began = time.perf_counter()
        for _ in range(steps):
            run()
        seconds.append(time.perf_counter() - began)
        GATE("epoch")
    return {
        "samples_per_s": _epochs_of(seconds, steps * a.batch_size),
        "train_loss_nats": [float("nan")] * a.epochs,
        "threads": torch.get_num_threads(),
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

    class Turn(TrainingCallback):  # after the Timer's on_epoch_end, so waiting is not timed
        def on_epoch_end(self, training_config, **kwargs):
            GATE("epoch")

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
        pipeline = TrainingPipeline(model=model, training_config=config)
        GATE("ready")
        pipeline(train_data=x, callbacks=[timer, Turn()])
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
    GATE("ready")
    for _ in range(a.epochs):
        began, total = time.perf_counter(), 0.0
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), a.batch_size):
            total += svi.step(torch.bernoulli(x[order[start : start + a.batch_size]]))
        seconds.append(time.perf_counter() - began)
        losses.append(total / len(x))
        GATE("epoch")
    return {
        "samples_per_s": _epochs_of(seconds, len(x)),
        "train_loss_nats": losses,
        "threads": torch.get_num_threads(),
    }


WORKERS = {"vaelab": worker_vaelab, "floor": worker_floor, "pythae": worker_pythae, "pyro": worker_pyro}


def run_worker(a: argparse.Namespace) -> None:
    global GATE
    GATE = Gate(a.report_fd)
    name, _, variant = a.worker.partition(":")
    if variant == "flush":  # a peer given the denormal flush vaelab.train sets for itself
        import torch

        torch.set_flush_denormal(True)
    out = WORKERS[name](a)
    out["peak_rss_mb"] = peak_rss_mb()
    Path(a.result).write_text(json.dumps(out), encoding="utf-8")


# --- the harness ---------------------------------------------------------------------------------------


class Worker:
    """One system's resident process: it trains an epoch each time it is told `go`, then waits again."""

    def __init__(self, name: str, python: str, a: argparse.Namespace, images: str, tmp: str, log) -> None:
        self.name, self.error = name, ""
        self.result = Path(tmp, f"{name.replace(':', '-')}.json")
        read, write = os.pipe()
        cmd = [python, str(Path(__file__).resolve()), "--worker", name, "--result", str(self.result)]
        cmd += ["--images", images, "--report-fd", str(write), "--data", a.data, "--data-dir", a.data_dir]
        cmd += ["--epochs", str(a.epochs), "--threads", str(a.threads), "--batch-size", str(a.batch_size)]
        cmd += ["--seed", str(a.seed), "--limit", str(a.limit)]
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        self.log_path = Path(log.name)
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
            pass_fds=(write,),
            text=True,
        )
        os.close(write)  # the worker holds the only write end: its exit reads as end-of-file here
        self.events = os.fdopen(read, "r")

    def expect(self, event: str) -> bool:
        """Wait for the worker to report `event`; False (and the error kept) if it died instead."""
        line = self.events.readline().strip()
        if line == event:
            return True
        self.proc.wait()
        tail = " | ".join(
            self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        )
        self.error = f"exit code {self.proc.returncode}: {tail[-400:]}"
        return False

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> dict:
        """Let the worker leave its last wait and exit; its result (or the error)."""
        if not self.error:
            self.go()
        self.proc.stdin.close()
        self.proc.wait()
        self.events.close()
        if self.error:
            return {"error": self.error}
        if self.proc.returncode != 0 or not self.result.is_file():
            return {"error": f"exit code {self.proc.returncode}"}
        return json.loads(self.result.read_text(encoding="utf-8"))


def run_interleaved(
    systems: list[tuple[str, str]], a: argparse.Namespace, images: str, tmp: str
) -> dict[str, dict]:
    """Start every system, then run epoch e of each in turn (order rotated every epoch); their results."""
    with Path(tmp, "workers.log").open("a", encoding="utf-8") as log:
        workers = {name: Worker(name, python, a, images, tmp, log) for name, python in systems}
        live = [n for n, w in workers.items() if w.expect("ready")]
        for e in range(a.epochs):
            for name in rotated(list(live), e):
                workers[name].go()
                if not workers[name].expect("epoch"):
                    live.remove(name)
        return {name: w.finish() for name, w in workers.items()}


def rotated(items: list[str], r: int) -> list[str]:
    """The running order of turn r: the list rotated by r, so no system always runs first or last."""
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


def paired_ratios(ours: list[float], peer: list[float], warmup: int) -> list[float]:
    """Epoch by epoch after the warm-up, our samples/s over the peer's in the same turn of epochs."""
    return [o / p for o, p in zip(ours[warmup:], peer[warmup:])]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="mnist", choices=("mnist", "fashion-mnist"))
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--epochs", type=int, default=6, help="epochs per system; the first is the warm-up")
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
    p.add_argument(
        "--no-floor",
        action="store_true",
        help="leave out the floor: a step of only the unavoidable GEMMs, draw and Adam update",
    )
    p.add_argument("--quick", action="store_true", help=f"{QUICK_IMAGES} images, 3 epochs, fp32 only")
    p.add_argument("--limit", type=int, default=0, help="train on the first N images (0: all)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--images", help=argparse.SUPPRESS)
    p.add_argument("--report-fd", type=int, default=-1, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        run_worker(a)
        return 0
    if a.quick:
        a.epochs, a.limit, a.variants = 3, a.limit or QUICK_IMAGES, "fp32"
    if a.epochs <= a.warmup:
        print("throughput: error: need --epochs > --warmup", file=sys.stderr)
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
    systems = [f"vaelab:{v}" for v in a.variants.split(",") if v] + ([] if a.no_floor else ["floor"])
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
        f"{a.data}: {n} training images, batch {a.batch_size}, {a.threads} threads, {a.epochs} epochs per "
        f"system ({a.warmup} warm-up), taking turns epoch by epoch; load average {load_before}"
    )
    with tempfile.TemporaryDirectory(prefix="vaelab-throughput-") as tmp:
        images = str(Path(tmp, "train-images.npy"))
        np.save(images, data.train.images.numpy())
        pythons = [
            (name, sys.executable if name.startswith(("vaelab", "floor")) else a.peer_python)
            for name in systems
        ]
        results = run_interleaved(pythons, a, images, tmp)
    for name, res in results.items():
        if "error" in res:
            print(f"{name:16s} failed: {res['error']}")
            continue
        s = res["summary"] = summary(res["samples_per_s"][a.warmup :], "samples/s")
        extra = f", test ELBO {res['test_elbo_nats'][-1]:.2f}" if "test_elbo_nats" in res else ""
        print(
            f"{name:16s} {s['median']:9.0f} samples/s (min {s['min']:.0f}, max {s['max']:.0f}), "
            f"peak RSS {res['peak_rss_mb']:.0f} MB, train loss {res['train_loss_nats'][-1]:.2f} nats{extra}"
        )
    ratios, ratio_spread = {}, {}
    for ours in (s for s in results if s.startswith(("vaelab", "floor")) and "summary" in results[s]):
        for peer in (s for s in peers if "summary" in results.get(s, {})):
            paired = paired_ratios(results[ours]["samples_per_s"], results[peer]["samples_per_s"], a.warmup)
            ratios[f"{ours} / {peer}"] = statistics.median(paired)
            ratio_spread[f"{ours} / {peer}"] = paired
    load_after = load_average()
    figures = {
        name: {
            "samples_per_s": res.get("summary"),
            "per_epoch": {"values": res.get("samples_per_s"), "unit": "samples/s"},
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
        "per_epoch": ratio_spread,
        "unit": "median over post-warm-up epochs of (our epoch's samples/s over the peer's in the same turn)",
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
        "schedule": "systems take turns epoch by epoch, order rotated every epoch",
        "warmup_epochs": a.warmup,
        "repetitions": a.epochs - a.warmup,
        "threads": a.threads,
        "seed": a.seed,
        "quick": a.quick,
        "peers": {
            "pythae": "0.1.2 TrainingPipeline",
            "pyro": "pyro-ppl SVI Trace_ELBO, validation off",
            ":flush": "the same peer with torch.set_flush_denormal(True), as vaelab.train runs",
        },
        "floor": "not a system: only the step's 11 GEMMs, bias sums, the fastest data draw and fused Adam (worker_floor)",
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    path = write_results("throughput", setting, figures, threads=a.threads)
    print(f"load average after: {load_after}; results: {path.relative_to(ROOT)}")
    for k, r in ratios.items():
        spread = ratio_spread[k]
        print(f"ratio {k}: {r:.2f}x (epochs: {', '.join(f'{x:.2f}' for x in spread)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
