"""The matrix-multiply roofline of a VAE training step: how fast could this machine train the 784-400-20 VAE?

A training step of an MLP VAE is, in FLOPs, almost only its matrix multiplies: per Linear layer one in the
forward pass (addmm) and two in the backward pass (grad_input = grad_out @ W, grad_W = grad_out^T @ x), less
the grad_input of the first layer (the data need no gradient). This script
  1. lists those GEMMs with their shapes and layouts for batch B and counts the FLOPs per training sample,
     checked against torch.utils.flop_counter on a real vaelab training step;
  2. times each GEMM alone, sustained (many calls, median of blocks), float32 (and bfloat16), on T threads;
  3. ideal samples/s = B / (sum of those times): a step that did nothing but its matrix multiplies;
  4. times, in interleaved rounds, the GEMMs alone, the floor (`floor_step`: GEMMs, bias sums, the data draw and
     Adam, nothing else) and vaelab's step, fp32 and bf16;
  5. trains vaelab on the real data in the same run and prints achieved / ideal.

    python benchmarks/roofline.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import ROOT, default_data_dir, load_average, mlp_vae_config, write_results  # noqa: E402


@dataclass(frozen=True)
class Gemm:
    """One matrix multiply of the step: [m, k] @ [k, n], with how its operands lie in memory."""

    name: str
    m: int
    k: int
    n: int
    a_t: bool = False  # the left operand is a transposed view
    b_t: bool = False  # the right operand is a transposed view
    bias: bool = False  # addmm (forward) rather than mm

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n


def step_gemms(batch: int, sizes: list[tuple[str, int, int]]) -> list[Gemm]:
    """The GEMMs autograd runs for Linear layers (name, in, out) in forward order; the first layer's input
    is data, so it has no grad_input GEMM."""
    out = [Gemm(f"{n} forward", batch, i, o, b_t=True, bias=True) for n, i, o in sizes]
    for j, (n, i, o) in enumerate(sizes):
        if j > 0:
            out.append(Gemm(f"{n} grad_input", batch, o, i))
        out.append(Gemm(f"{n} grad_weight", o, batch, i, a_t=True))
    return out


def vae_layers(data: int = 784, hidden: int = 400, latent: int = 20) -> list[tuple[str, int, int]]:
    """vaelab's VAE: encoder x->h, head h->(loc, raw scale), decoder z->h->logits."""
    return [
        ("encoder", data, hidden),
        ("head", hidden, 2 * latent),
        ("decoder.0", latent, hidden),
        ("decoder.1", hidden, data),
    ]


def time_gemm(g: Gemm, dtype: torch.dtype, seconds: float = 0.25, blocks: int = 5) -> float:
    """Median seconds per call of `g`, sustained: blocks of back-to-back calls lasting about `seconds`."""
    gen = torch.Generator().manual_seed(0)
    a = (
        torch.randn(g.k, g.m, generator=gen).to(dtype).t()
        if g.a_t
        else torch.randn(g.m, g.k, generator=gen).to(dtype)
    )
    b = (
        torch.randn(g.n, g.k, generator=gen).to(dtype).t()
        if g.b_t
        else torch.randn(g.k, g.n, generator=gen).to(dtype)
    )
    bias = torch.randn(g.n, generator=gen).to(dtype)
    out = torch.empty(g.m, g.n, dtype=dtype)

    def call() -> None:
        if g.bias:
            torch.addmm(bias, a, b, out=out)
        else:
            torch.mm(a, b, out=out)

    for _ in range(20):
        call()
    began, reps = time.perf_counter(), 0
    while time.perf_counter() - began < 0.05:
        call()
        reps += 1
    per_block = max(10, int(reps * seconds / 0.05 / blocks))
    times = []
    for _ in range(blocks):
        t = time.perf_counter()
        for _ in range(per_block):
            call()
        times.append((time.perf_counter() - t) / per_block)
    return statistics.median(times)


def counted_flops_per_sample(batch: int) -> float:
    """FLOPs of one real vaelab training step (forward + backward) per sample, by torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    from vaelab.config import Config
    from vaelab.models.registry import build_model
    from vaelab.objectives.elbo import elbo_objective

    cfg = Config()
    model = build_model(cfg.model, (1, 28, 28))
    x = torch.bernoulli(torch.full((batch, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        elbo_objective(model, x, cfg.objective, 1.0, torch.Generator().manual_seed(1)).loss.backward()
    return counter.get_total_flops() / batch


def gemm_sequence(
    batch: int, hidden: int, latent: int, dtype: torch.dtype = torch.float32
) -> Callable[[], None]:
    """The step's GEMMs back to back on preallocated operands of `dtype`: a step that only multiplies."""
    gen = torch.Generator().manual_seed(0)
    ops = []

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(dtype)

    for g in step_gemms(batch, vae_layers(784, hidden, latent)):
        a = rand(g.k, g.m).t() if g.a_t else rand(g.m, g.k)
        b = rand(g.n, g.k).t() if g.b_t else rand(g.k, g.n)
        ops.append((g.bias, a, b, rand(g.n), torch.empty(g.m, g.n, dtype=dtype)))

    def run() -> None:
        for bias_used, a, b, bias, out in ops:
            if bias_used:
                torch.addmm(bias, a, b, out=out)
            else:
                torch.mm(a, b, out=out)

    return run


def vaelab_step(a: argparse.Namespace, precision: str = "fp32") -> tuple[Callable[[], None], int]:
    """One process's training step as vaelab.train runs it (the body of its batch loop), on real batches;
    `bf16` runs the forward pass under CPU autocast as `--precision bf16` does."""
    from vaelab.data import epoch_batches, load_data, prepare
    from vaelab.models.registry import build_model, get_spec
    from vaelab.objectives.elbo import OBJECTIVES
    from vaelab.train.loop import FiniteWatch, ObjectiveModule, _autocast, make_optimizer

    cfg = mlp_vae_config(
        a.data, a.data_dir, limit=a.limit, batch_size=a.batch_size, hidden=a.hidden, latent=a.latent
    )
    data = load_data(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg.model, data.shape)
    optimizer = make_optimizer(cfg.train, model.parameters())
    net = ObjectiveModule(model, OBJECTIVES[get_spec(cfg.model.name).objective], cfg.objective)
    train_data = prepare(data.train, "dynamic", "cpu", 0, train=True)
    g_noise = torch.Generator().manual_seed(2)
    batches = epoch_batches(len(train_data), a.batch_size, torch.Generator().manual_seed(1))
    watch, sums, state = FiniteWatch(torch.device("cpu"), str), {}, {"i": 0}

    def run() -> None:
        idx = batches[state["i"] % len(batches)]
        state["i"] += 1
        with _autocast(torch.device("cpu"), precision):
            res = net(train_data.batch(idx, g_noise), 1.0, g_noise)
        watch.add(res.loss, 1, state["i"])
        optimizer.zero_grad(set_to_none=True)
        res.loss.backward()
        optimizer.step()
        for k, v in res.stats.items():
            s = v.detach().sum()
            sums[k] = sums[k] + s if k in sums else s

    return run, len(batches)


def floor_step(a: argparse.Namespace) -> tuple[Callable[[], None], int]:
    """The floor of any fp32 implementation of the step: only its unavoidable work, on real batches.

    Per batch: the gather and the fastest dynamic binarization measured here (16 bits a pixel from numpy's
    SFC64: 0.23 ms a batch against 0.51-0.55 ms with vaelab's `torch.rand`, whose CPU generator is serial),
    the 11 GEMMs of the forward and backward passes with their real operands (the logits stand in for their
    own gradient), the bias-gradient sums and one fused Adam update. No activation, reparameterisation, loss or KL pass: a real training step does all
    this and more, so the floor's samples/s bound from above what any implementation could reach here."""
    import numpy as np

    from vaelab.data import epoch_batches, load_data

    cfg = mlp_vae_config(a.data, a.data_dir, limit=a.limit, batch_size=a.batch_size)
    images = load_data(cfg.data).train.images.flatten(1)
    gen = torch.Generator().manual_seed(0)
    layers = vae_layers(784, a.hidden, a.latent)
    weights = [torch.randn(o, i, generator=gen) / i**0.5 for _, i, o in layers]
    biases = [torch.zeros(o) for _, _, o in layers]
    params = [t.requires_grad_() for pair in zip(weights, biases) for t in pair]
    for t in params:
        t.grad = torch.zeros_like(t)
    optimizer = torch.optim.Adam(params, lr=1e-3, fused=True)
    (w1, w2, w3, w4), (b1, b2, b3, b4) = [w.detach() for w in weights], [b.detach() for b in biases]
    gw, gb = [w.grad for w in weights], [b.grad for b in biases]
    bits = np.random.Generator(np.random.SFC64(3))
    batches = epoch_batches(len(images), a.batch_size, torch.Generator().manual_seed(1))
    state = {"i": 0}

    @torch.no_grad()
    def run() -> None:
        p = images.index_select(0, batches[state["i"] % len(batches)]).float().mul_(65536 / 255)
        u = torch.from_numpy(bits.integers(0, 65536, size=tuple(p.shape), dtype=np.uint16)).float()
        x = torch.lt(u, p, out=u)
        state["i"] += 1
        h = torch.addmm(b1, x, w1.t())
        head = torch.addmm(b2, h, w2.t())
        z = head[:, : a.latent]
        hd = torch.addmm(b3, z, w3.t())
        d4 = torch.addmm(b4, hd, w4.t())
        torch.mm(d4.t(), hd, out=gw[3])
        d3 = d4 @ w4
        torch.mm(d3.t(), z, out=gw[2])
        d2 = torch.zeros_like(head)
        d2[:, : a.latent] = d3 @ w3
        torch.mm(d2.t(), h, out=gw[1])
        d1 = d2 @ w2
        torch.mm(d1.t(), x, out=gw[0])
        for g, d in zip(gb, (d1, d2, d3, d4)):
            torch.sum(d, 0, out=g)
        optimizer.step()

    return run, len(batches)


def interleaved(runs: dict[str, Callable[[], None]], blocks: int, per_block: int) -> dict[str, float]:
    """Median seconds per call of each function, measured in alternating blocks (load drifts hit all alike)."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for f in runs.values():
        for _ in range(20):
            f()
    for _ in range(blocks):
        for k, f in runs.items():
            for _ in range(per_block):
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def achieved(a: argparse.Namespace) -> dict:
    """vaelab.train on the real data: samples/s per epoch (the first epoch is the warm-up)."""
    from vaelab.train import train

    cfg = mlp_vae_config(
        a.data,
        a.data_dir,
        limit=a.limit,
        epochs=a.epochs,
        threads=a.threads,
        batch_size=a.batch_size,
        hidden=a.hidden,
        latent=a.latent,
    )
    rates = [r["samples_per_s"] for r in train(cfg).history]
    return {"per_epoch": rates, "median": statistics.median(rates[1:] or rates)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--latent", type=int, default=20)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--data", default="mnist", choices=("mnist", "fashion-mnist"))
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--epochs", type=int, default=4, help="epochs of the achieved run (first is warm-up)")
    p.add_argument("--limit", type=int, default=0, help="train on the first N images (0: all)")
    p.add_argument("--quick", action="store_true", help="shorter timings, 2 epochs of 12,800 images")
    a = p.parse_args(argv)
    if a.quick:
        a.epochs, a.limit = 2, a.limit or 12_800
    torch.set_num_threads(a.threads)
    load_before = load_average()
    gemms = step_gemms(a.batch_size, vae_layers(784, a.hidden, a.latent))
    flops = sum(g.flops for g in gemms)
    fwd = sum(g.flops for g in gemms if g.bias)
    counted = counted_flops_per_sample(a.batch_size) if a.hidden == 400 and a.latent == 20 else None
    seconds = 0.1 if a.quick else 0.25
    rows, total = [], {"float32": 0.0, "bfloat16": 0.0}
    print(f"batch {a.batch_size}, {a.threads} threads, load average {load_before}")
    print(f"{'GEMM':24s} {'m x k x n':>16s} {'MFLOP':>7s} {'fp32 GFLOP/s':>13s} {'bf16 GFLOP/s':>13s}")
    for g in gemms:
        t32 = time_gemm(g, torch.float32, seconds)
        t16 = time_gemm(g, torch.bfloat16, seconds)
        total["float32"] += t32
        total["bfloat16"] += t16
        rows.append(
            {
                "gemm": g.name,
                "m": g.m,
                "k": g.k,
                "n": g.n,
                "mflop": g.flops / 1e6,
                "fp32_gflops": g.flops / t32 / 1e9,
                "bf16_gflops": g.flops / t16 / 1e9,
            }
        )
        print(
            f"{g.name:24s} {f'{g.m}x{g.k}x{g.n}':>16s} {g.flops / 1e6:7.2f} "
            f"{g.flops / t32 / 1e9:13.1f} {g.flops / t16 / 1e9:13.1f}"
        )
    rate32 = flops / total["float32"]
    ideal32 = a.batch_size / total["float32"]
    ideal16 = a.batch_size / total["bfloat16"]
    print(
        f"FLOPs per training sample: {flops / a.batch_size / 1e6:.3f} MFLOP (forward {fwd / a.batch_size / 1e6:.3f})"
        + (f"; torch flop counter on a vaelab step: {counted / 1e6:.3f} MFLOP" if counted else "")
    )
    print(
        f"sustained fp32 rate for these shapes: {rate32 / 1e9:.1f} GFLOP/s -> ideal {ideal32:.0f} samples/s "
        f"(bf16 GEMMs: ideal {ideal16:.0f} samples/s)"
    )
    from vaelab.device import flush_denormals, keep_freed_memory

    keep_freed_memory()  # the runtime settings vaelab.train runs with
    with flush_denormals():
        per = interleaved(
            {
                "gemms": gemm_sequence(a.batch_size, a.hidden, a.latent),
                "floor": floor_step(a)[0],
                "vaelab": vaelab_step(a)[0],
                "gemms_bf16": gemm_sequence(a.batch_size, a.hidden, a.latent, torch.bfloat16),
                "vaelab_bf16": vaelab_step(a, "bf16")[0],
            },
            blocks=4 if a.quick else 10,
            per_block=40,
        )
    step_ideal, step_ours = a.batch_size / per["gemms"], a.batch_size / per["vaelab"]
    print(
        f"interleaved, same process: GEMMs alone {per['gemms'] * 1e3:.2f} ms/step ({step_ideal:.0f} samples/s), "
        f"vaelab's step {per['vaelab'] * 1e3:.2f} ms ({step_ours:.0f} samples/s): {100 * step_ours / step_ideal:.1f}%"
    )
    print(
        f"the floor (GEMMs, bias sums, the fastest data draw, fused Adam: nothing else) {per['floor'] * 1e3:.2f} ms/step: "
        f"{100 * per['gemms'] / per['floor']:.1f}% of the GEMMs' rate; vaelab's step is "
        f"{100 * per['floor'] / per['vaelab']:.1f}% of the floor's rate"
    )
    print(
        f"bf16, same rounds: GEMMs alone {per['gemms_bf16'] * 1e3:.2f} ms/step, vaelab's --precision bf16 step "
        f"{per['vaelab_bf16'] * 1e3:.2f} ms ({a.batch_size / per['vaelab_bf16']:.0f} samples/s): "
        f"{per['vaelab'] / per['vaelab_bf16']:.2f}x the fp32 step, "
        f"{100 * per['gemms'] / per['vaelab_bf16']:.1f}% of the fp32 roofline"
    )
    got = achieved(a)
    frac = got["median"] / ideal32
    print(
        f"vaelab.train achieved {got['median']:.0f} samples/s (median of epochs 2..{a.epochs}): "
        f"{100 * frac:.1f}% of the fp32 roofline above (target 60%)"
    )
    figures = {
        "gemms": rows,
        "flops_per_sample": {"value": flops / a.batch_size, "unit": "FLOP"},
        "forward_flops_per_sample": {"value": fwd / a.batch_size, "unit": "FLOP"},
        "flop_counter_per_sample": {"value": counted, "unit": "FLOP"},
        "fp32_gemm_rate": {"value": rate32 / 1e9, "unit": "GFLOP/s"},
        "ideal_fp32": {"value": ideal32, "unit": "samples/s"},
        "ideal_bf16_gemms": {"value": ideal16, "unit": "samples/s"},
        "achieved": {"value": got["median"], "per_epoch": got["per_epoch"], "unit": "samples/s"},
        "achieved_over_ideal": {"value": frac, "unit": "fraction"},
        "interleaved_gemm_step": {"value": per["gemms"] * 1e3, "unit": "ms per step"},
        "interleaved_vaelab_step": {"value": per["vaelab"] * 1e3, "unit": "ms per step"},
        "interleaved_step_over_gemms": {"value": per["gemms"] / per["vaelab"], "unit": "fraction"},
        "interleaved_floor_step": {"value": per["floor"] * 1e3, "unit": "ms per step"},
        "interleaved_floor_over_gemms": {"value": per["gemms"] / per["floor"], "unit": "fraction"},
        "interleaved_bf16_gemm_step": {"value": per["gemms_bf16"] * 1e3, "unit": "ms per step"},
        "interleaved_vaelab_bf16_step": {"value": per["vaelab_bf16"] * 1e3, "unit": "ms per step"},
        "interleaved_bf16_speedup": {"value": per["vaelab"] / per["vaelab_bf16"], "unit": "x fp32 step"},
    }
    setting = {
        "model": f"VAE 784-{a.hidden}-{a.latent}",
        "batch_size": a.batch_size,
        "threads": a.threads,
        "data": a.data,
        "split": "train",
        "binarization": "dynamic",
        "train_limit": a.limit,
        "epochs": a.epochs,
        "warmup_epochs": 1,
        "seed": 0,
        "quick": a.quick,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    path = write_results("roofline", setting, figures, threads=a.threads)
    print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
