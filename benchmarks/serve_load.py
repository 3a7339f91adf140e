"""The explorer under load: many concurrent decode requests on loopback for a fixed time, then it stops.

`vaelab serve` runs in its own process; `--concurrency` clients (default 200) each send POST /api/decode of
random z, one after another, for `--seconds` (default 30) against 127.0.0.1 only. Reports the count of
requests and errors, p50 / p99 latency and throughput; writes benchmarks/results/serve_load.json.

    .venv/bin/python benchmarks/serve_load.py [--run RUN] [--concurrency 200] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from common import ROOT, figure, load_average, write_results
from serve_latency import demo_sized_run, serve


async def client_loop(
    client: httpx.AsyncClient, url: str, run: str, dim: int, seed: int, stop: float, out: dict
) -> None:
    """One client: decode requests back to back until the deadline; latencies and failures into `out`."""
    rng = np.random.default_rng(seed)
    while time.perf_counter() < stop:
        z = rng.standard_normal(dim).tolist()
        t = time.perf_counter()
        try:
            r = await client.post(url, json={"run": run, "z": z})
            ok = r.status_code == 200 and r.headers.get("content-type") == "image/png"
        except httpx.HTTPError as e:
            ok = False
            out["exceptions"].append(type(e).__name__)
        out["latency"].append(time.perf_counter() - t)
        out["errors"] += not ok


async def hammer(url: str, run: str, dim: int, concurrency: int, seconds: float) -> dict:
    """`concurrency` clients for `seconds`; bounded in time, loopback only."""
    assert url.startswith("http://127.0.0.1:"), url
    out: dict = {"latency": [], "errors": 0, "exceptions": []}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await client.post(url, json={"run": run, "z": [0.0] * dim})  # load the model before the clock starts
        start = time.perf_counter()
        stop = start + seconds
        await asyncio.gather(*(client_loop(client, url, run, dim, i, stop, out) for i in range(concurrency)))
        out["wall"] = time.perf_counter() - start
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="run folder to serve (default: runs/demo-vae if present, else train one)")
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=0, help="torch threads in the server (0: torch's default)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else ROOT / "runs" / "demo-vae"
        if not (run / "checkpoints").is_dir():
            print("training a demo-sized run for one epoch...", flush=True)
            run = demo_sized_run(Path(tmp))
        dim = json.loads((run / "config.json").read_text())["model"]["latent_dim"]
        load_before = load_average()
        proc, url = serve(run, args.threads)
        try:
            res = asyncio.run(hammer(url, run.name, dim, args.concurrency, args.seconds))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    ms = np.array(res["latency"]) * 1000
    n = len(ms)
    p50, p99 = (float(v) for v in np.percentile(ms, [50, 99]))
    figures = {
        "requests": figure(n, "requests"),
        "errors": figure(res["errors"], "requests"),
        "throughput": figure(n / res["wall"], "requests/s"),
        "latency_p50": figure(p50, "ms"),
        "latency_p99": figure(p99, "ms"),
        "latency_max": figure(float(ms.max()), "ms"),
    }
    setting = {
        "what": "POST /api/decode of one random z (JSON in, PNG out) from concurrent clients over loopback",
        "run": run.name,
        "latent_dim": dim,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "server_threads": args.threads or "torch default",
        "load_average_before": load_before,
        "exceptions": sorted(set(res["exceptions"])),
    }
    path = write_results("serve_load", setting, figures, args.threads or None)
    print(
        f"{args.concurrency} clients for {res['wall']:.1f} s: {n} requests, {res['errors']} errors, "
        f"{n / res['wall']:.0f} requests/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    print(f"wrote {path}")
    return 0 if res["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
