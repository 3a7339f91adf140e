"""Where bf16 bites: a run's training gradients under bf16 autocast against fp32, network by network.

Loads a checkpoint of RUN, takes --batches training batches (seeded, the run's own data and objective) and
computes the gradient of the training loss three times with the same draws: in fp32, under bf16 autocast,
and in fp32 with other draws (the Monte Carlo noise the bf16 error is to be compared with). For each top-level
network it prints the relative error |g_bf16 - g_fp32| / |g_fp32| and the cosine between them, beside the
noise's relative size. `--float32 NAME` runs the submodule NAME outside autocast (its inputs cast to float32):
the trial that tells whether one layer is the culprit; `--bf16 NAME` runs a `Float32Linear` under autocast as
a plain linear layer (the model as it was before). The ADGM's classifier logits were found this way
(docs/semi-supervised-notes.md, "Where bf16 bites"): `python benchmarks/bf16_gradients.py RUN --which last --bf16 q_y.rest.2`.
A diagnostic, not the training step: the KL weight is --beta (not the run's warm-up), and the binarisation and
the model's draws come from their own seeded streams.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn


def submodule(model: nn.Module, name: str, flag: str) -> nn.Module:
    """`model`'s submodule `name`; a one-line exit naming the children of its deepest existing parent if none."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        parts, parent, found = name.split("."), model, 0
        for part in parts:
            child = getattr(parent, part, None)
            if not isinstance(child, nn.Module):
                break
            parent, found = child, found + 1
        where = ".".join(parts[:found]) or "the model"
        names = ", ".join(n for n, _ in parent.named_children())
        raise SystemExit(f"bf16_gradients: {flag} {name}: no such submodule; {where} has: {names}") from None


def float32_module(model: nn.Module, name: str) -> None:
    """Run `model`'s submodule `name` outside autocast, its positional floating-point tensors cast to float32
    (in place)."""
    mod = submodule(model, name, "--float32")
    inner = mod.forward

    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        cast = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
        with torch.autocast("cpu", enabled=False):  # the tool runs on the CPU (`gradients`)
            return inner(*cast, **kwargs)

    mod.forward = types.MethodType(forward, mod)


def bf16_module(model: nn.Module, name: str) -> None:
    """Run `model`'s `Float32Linear` `name` as a plain linear layer, in bf16 under autocast (in place)."""
    from vaelab.nets.mlp import Float32Linear

    mod = submodule(model, name, "--bf16")
    if not isinstance(mod, Float32Linear):
        raise SystemExit(f"bf16_gradients: --bf16 {name}: a {type(mod).__name__}, not a Float32Linear")
    mod.forward = types.MethodType(nn.Linear.forward, mod)


def gradients(
    step: Callable[[torch.Generator], Any], model: nn.Module, bf16: bool, seed: int
) -> dict[str, torch.Tensor]:
    """Every parameter's gradient of `step(generator)`'s loss, under bf16 autocast or not; backward outside it,
    as the training step does."""
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = step(torch.Generator().manual_seed(seed)).loss
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def compare(ref: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
    """Per top-level network (the parameter name's first part): (relative error, cosine) of `other`'s gradient,
    all its parameters flattened into one vector, against `ref`'s."""
    groups: dict[str, list[str]] = {}
    for n in ref:
        groups.setdefault(n.split(".")[0], []).append(n)
    out = {}
    for g, names in groups.items():
        a = torch.cat([ref[n].flatten().double() for n in names])
        b = torch.cat([other[n].flatten().double() for n in names])
        norm = float(a.norm())
        rel = float((b - a).norm()) / norm if norm > 0 else float("nan")
        cos = float(torch.nn.functional.cosine_similarity(a, b, 0)) if norm > 0 else float("nan")
        out[g] = (rel, cos)
    return out


def run(a: argparse.Namespace) -> dict[str, Any]:
    """The comparison on --batches batches: per network, the mean relative error and cosine over batches."""
    from vaelab.config import Config
    from vaelab.data import epoch_batches, prepare
    from vaelab.data.python import resolve_data
    from vaelab.models.registry import get_spec, objective_name
    from vaelab.objectives import OBJECTIVES
    from vaelab.train.checkpoint import load
    from vaelab.train.scoring import ObjectiveModule, label_args

    torch.set_num_threads(a.threads)
    folder = Path(a.run)
    if not (folder / "config.json").is_file():
        raise SystemExit(f"bf16_gradients: {folder}: not a run folder (no config.json)")
    cfg = Config.from_dict(json.loads((folder / "config.json").read_text()))
    if a.data_dir:
        cfg = cfg.replace(**{"data.data_dir": a.data_dir})
    data, cfg = resolve_data(cfg, None, None)
    model = load(folder, which=a.which)
    model.train()
    for name in a.bf16:
        inside = [f for f in a.float32 if name == f or name.startswith(f + ".")]
        if inside:
            raise SystemExit(
                f"bf16_gradients: --bf16 {name} lies in --float32 {inside[0]}, which runs it in float32"
            )
        bf16_module(model, name)
    for name in a.float32:
        float32_module(model, name)
    net = ObjectiveModule(model, OBJECTIVES[objective_name(cfg)], cfg.objective)
    train = prepare(data.train, cfg.data.binarize, "cpu", cfg.data.binarize_seed, train=True)
    needs_labels = get_spec(cfg.model.name).needs_labels
    g_perm, g_data = torch.Generator().manual_seed(a.seed), torch.Generator().manual_seed(a.seed + 1)
    sums: dict[str, list[float]] = {}
    for idx in epoch_batches(len(data.train.images), cfg.train.batch_size, g_perm)[: a.batches]:
        x, labels = train.batch(idx, g_data), label_args(train, idx, needs_labels)

        def step(g: torch.Generator, x: torch.Tensor = x, labels: dict = labels) -> Any:
            return net(x, a.beta, g, labels)

        ref = gradients(step, model, False, a.seed)
        res = {
            "bf16": compare(ref, gradients(step, model, True, a.seed)),
            "noise": compare(ref, gradients(step, model, False, a.seed + 100)),
        }
        for g in res["bf16"]:
            s = sums.setdefault(g, [0.0, 0.0, 0.0])
            s[0] += res["bf16"][g][0] / a.batches
            s[1] += res["bf16"][g][1] / a.batches
            s[2] += res["noise"][g][0] / a.batches
    return {
        "run": str(folder),
        "checkpoint": a.which,
        "float32": a.float32,
        "bf16": a.bf16,
        "batches": a.batches,
        "networks": {g: {"bf16_rel": s[0], "bf16_cos": s[1], "noise_rel": s[2]} for g, s in sums.items()},
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked (argparse's one-line errors)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a run folder")
    p.add_argument("--which", default="best", choices=("best", "last"))
    p.add_argument("--data-dir", default="", help="where the run's data set is (default: the run's own)")
    p.add_argument("--batches", type=int, default=1)
    p.add_argument("--beta", type=float, default=1.0, help="the KL weight of the step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--float32", action="append", default=[], metavar="NAME", help="a submodule run in float32"
    )
    p.add_argument("--bf16", action="append", default=[], metavar="NAME", help="a Float32Linear run in bf16")
    p.add_argument("--json", help="write the result here as well")
    a = p.parse_args(argv)
    if a.batches < 1:
        p.error(f"--batches must be >= 1, got {a.batches}")
    return a


def main(argv: list[str] | None = None) -> int:
    """Print the per-network comparison (and write it to --json); vaelab's errors exit in one line."""
    from vaelab.errors import VaelabError

    a = parse(argv)
    try:
        res = run(a)
    except VaelabError as e:
        raise SystemExit(f"bf16_gradients: {e}") from None
    print(f"{'network':16s} {'bf16 rel':>9s} {'cosine':>7s} {'MC noise rel':>13s}")
    for g, s in res["networks"].items():
        print(f"{g:16s} {s['bf16_rel']:9.3f} {s['bf16_cos']:7.3f} {s['noise_rel']:13.3f}")
    if a.json:
        from vaelab.io import atomic_write_json

        atomic_write_json(Path(a.json), res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
