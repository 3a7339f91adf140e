"""What the VampPrior's mixture density costs and how exact it is, in one run.

`DiagonalGaussianMixture.component_log_prob` expands the squares into matrix products; in plain float32 that
cancels at collapsed components (the moonshot's divergence, docs/speedrun.md). Three forms are timed (forward
and backward of logsumexp over the components) and checked against the direct float64 sum of squares:

- `float32`: the plain expansion (fast, wrong where scales are small);
- `float64`: the whole expansion in float64 (exact, the fix of 2026-12-04);
- `vaelab`: float32 where its rounding bound is under `MIXTURE_TOLERANCE`, float64 for the other components.

in two states of a 500-component prior in 40 dimensions: healthy (scales 0.5-1.5) and collapsed (497 of 500
components at the 1e-5 floor, as the diverged moonshot's were), and, with --steps, the moonshot's training step
(configs/speedrun-mnist-any-8h.yaml, bf16) on random binary images with each form.

    python benchmarks/mixture_density.py                # ~1 minute on one thread
    python benchmarks/mixture_density.py --steps 40     # + the training step

Results: `benchmarks/results/mixture_density.json`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import ROOT, write_results  # noqa: E402
from vaelab.device import autocast_off  # noqa: E402
from vaelab.distributions import priors  # noqa: E402

Form = Callable[[priors.DiagonalGaussianMixture, torch.Tensor], torch.Tensor]


def _expansion(mix: priors.DiagonalGaussianMixture, z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The expanded squares in one dtype throughout, outside autocast."""
    with autocast_off(z.device.type):
        zz, locs, scales = z.to(dtype), mix.locs.to(dtype), mix.scales.to(dtype)
        quad, _ = priors._expanded_squares(zz, locs, scales)
        norm = scales.log().sum(-1) + 0.5 * locs.shape[-1] * math.log(2 * math.pi)
        return (-0.5 * quad.clamp_min(0) - norm).float()


FORMS: dict[str, Form] = {
    "float32": lambda mix, z: _expansion(mix, z, torch.float32),
    "float64": lambda mix, z: _expansion(mix, z, torch.float64),
    "vaelab": priors.DiagonalGaussianMixture.component_log_prob,
}


def state(kind: str, points: int, components: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Locations, scales and points near the components: `healthy` or `collapsed` (all but 3 at 1e-5)."""
    g = torch.Generator().manual_seed(seed)
    locs = torch.randn(components, dim, generator=g)
    scales = 0.5 + torch.rand(components, dim, generator=g)
    if kind == "collapsed":
        scales[3:] = 1e-5
    pick = torch.randint(components, (points,), generator=g)
    z = locs[pick] + scales[pick] * torch.randn(points, dim, generator=g)
    return locs, scales, z


def max_error(form: Form, locs: torch.Tensor, scales: torch.Tensor, z: torch.Tensor) -> float:
    """The largest |error| (nats) of a form's log-densities against the direct float64 sum of squares, over the
    values a logsumexp over the components can ever see (above -1e6)."""
    with torch.no_grad():
        got = form(priors.DiagonalGaussianMixture(locs, scales), z).double()
        want = (
            torch.distributions.Normal(locs.double(), scales.double()).log_prob(z.double()[:, None]).sum(-1)
        )
    keep = want > -1e6
    return float((got - want)[keep].abs().max())


def time_forms(
    locs: torch.Tensor, scales: torch.Tensor, z: torch.Tensor, reps: int
) -> dict[str, list[float]]:
    """Milliseconds for forward and backward of logsumexp over the components, `reps` times a form, the forms
    interleaved (the machine's load drifts between them otherwise)."""
    locs, scales, z = (t.clone().requires_grad_() for t in (locs, scales, z))
    out: dict[str, list[float]] = {name: [] for name in FORMS}
    for rep in range(reps + 1):
        for name, form in FORMS.items():
            t = time.perf_counter()
            lp = torch.logsumexp(form(priors.DiagonalGaussianMixture(locs, scales), z), -1).sum()
            lp.backward()
            if rep:  # the first round warms up
                out[name].append((time.perf_counter() - t) * 1e3)
    return out


def step_times(steps: int, threads: int) -> dict[str, float]:
    """ms per training step of the moonshot's config on `steps` batches of random images, with each form."""
    import vaelab
    from vaelab.config import build_config

    x = (torch.rand(steps * 100, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    cfg = build_config(
        ROOT / "configs" / "speedrun-mnist-any-8h.yaml",
        {
            "train.epochs": 1,
            "train.progress": False,
            "train.threads": threads,
            "data.valid_fraction": 0.0,
            "train.eval_test": False,
        },
    )
    real = priors.DiagonalGaussianMixture.component_log_prob
    times: dict[str, list[float]] = {name: [] for name in FORMS}
    try:
        for _ in range(3):  # interleaved: the machine's load drifts
            for name, form in FORMS.items():
                priors.DiagonalGaussianMixture.component_log_prob = form  # type: ignore[method-assign]
                res = vaelab.train(cfg, data=x)
                times[name].append(res.history[-1]["seconds"] / steps * 1e3)
    finally:
        priors.DiagonalGaussianMixture.component_log_prob = real  # type: ignore[method-assign]
    return {name: statistics.median(v) for name, v in times.items()}


def measure(points: int, components: int, dim: int, reps: int) -> dict[str, Any]:
    """Errors and timings of every form in both states."""
    figures: dict[str, Any] = {}
    for kind in ("healthy", "collapsed"):
        locs, scales, z = state(kind, points, components, dim)
        times = time_forms(locs, scales, z, reps)
        row: dict[str, Any] = {
            name: {
                "ms_median": statistics.median(times[name]),
                "max_abs_error_nats": max_error(form, locs, scales, z),
            }
            for name, form in FORMS.items()
        }
        row["vaelab_over_float64_time"] = row["vaelab"]["ms_median"] / row["float64"]["ms_median"]
        figures[kind] = row
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=500, help="points scored (batch 100 x IWAE k=5)")
    ap.add_argument("--components", type=int, default=500)
    ap.add_argument("--dim", type=int, default=40)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument(
        "--steps", type=int, default=0, help="also time the moonshot's training step over N batches"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-save", action="store_true", help="print, do not write the results file")
    args = ap.parse_args(argv)
    for name in ("points", "components", "dim", "reps", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    if args.steps < 0:
        ap.error("--steps must be 0 (off) or more")
    torch.set_num_threads(args.threads)
    figures = measure(args.points, args.components, args.dim, args.reps)
    if args.steps:
        ms = step_times(args.steps, args.threads)
        figures["training_step_ms"] = ms
        figures["training_step_vaelab_over_float64"] = ms["vaelab"] / ms["float64"]
    for kind in ("healthy", "collapsed"):
        row = figures[kind]
        print(
            kind,
            "  ".join(
                f"{n}: {row[n]['ms_median']:.2f} ms, err {row[n]['max_abs_error_nats']:.2g}" for n in FORMS
            ),
        )
    if args.steps:
        print("training step (ms):", {k: round(v, 1) for k, v in figures["training_step_ms"].items()})
    if not args.no_save:
        setting = {k: getattr(args, k) for k in ("points", "components", "dim", "reps", "steps")}
        setting["tolerance_nats"] = priors.MIXTURE_TOLERANCE
        print(write_results("mixture_density", setting, figures, threads=args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
