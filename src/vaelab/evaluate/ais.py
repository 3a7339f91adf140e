"""log p(x) by annealed importance sampling (Neal 2001) with HMC transitions from the prior, as Wu et al.
(2017) evaluate decoder-based models: the estimator behind `--ais T`.

Needs a prior and an unlabelled decoder (`capabilities(model)`); a model with no likelihood of its own but a
stated observation model (a GAN) is scored under it, and the block says so. Blocks of images are shared
among ranks; the images per block are chosen so that each decoder call sees enough rows
(`vaelab.evaluate.blocks.min_block_size`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from tqdm import tqdm

from vaelab.evaluate.blocks import block_generator, blocks, min_block_size, my_blocks, run_blocks
from vaelab.evaluate.estimators import (
    Context,
    Estimate,
    mean_and_stderr,
    refuse_for_exact,
    register_estimator,
    require,
)
from vaelab.inference.ais import ais_log_px

METHOD = "annealed importance sampling (Neal 2001) with HMC transitions, from the prior"
BLOCK_ROWS = 2000  # decoder rows per block: images x (chains + 2 pilots)


def refuse(ctx: Context) -> None:
    """AIS needs a prior and a decoder of z alone; an exact model has no use for it.

    Args:
        ctx: the evaluation's context.
    """
    refuse_for_exact(ctx)
    require(ctx.model, ctx.caps, "prior", "decode", what="annealed importance sampling")


def _row(est: Estimate) -> str:
    s, x = est.settings, est.extras
    return (
        f"T={s['steps']}, C={s['chains']}, L={s['leapfrog']}, {s['schedule']}, "
        f"acceptance {x['acceptance']:.2f}, chain spread {x['chain_spread']:.2f}, {est.n} images"
    )


def _notes(est: Estimate, meta: Mapping[str, Any]) -> list[str]:
    """The observation model scored, unless the likelihood line above already names it."""
    if "observation_model" in est.extras and "likelihood" not in meta:
        return [f"AIS {est.extras['observation_model']}"]
    return []


@register_estimator(
    "ais",
    applies=lambda caps, settings: settings.ais > 0,
    refuse=refuse,
    label="AIS",
    row=_row,
    notes=_notes,
    description="annealed importance sampling from the prior (--ais T)",
)
def ais(ctx: Context) -> Estimate:
    """Forward AIS with T = settings.ais steps and C = settings.chains chains per image.

    Args:
        ctx: the evaluation's context.
    """
    s, data = ctx.settings, ctx.data
    start = time.perf_counter()
    parts = blocks(ctx.n, max(1, BLOCK_ROWS // (s.chains + 2)), min_size=min_block_size(s.chains + 2))
    bar = tqdm(
        total=s.ais * len(my_blocks(parts)), disable=not ctx.progress, desc=f"AIS T={s.ais} C={s.chains}"
    )

    def one_block(index: int, rows: slice) -> dict[str, torch.Tensor]:
        x = data.batch(rows)
        g = block_generator(s.seed, "ais", index, x.device)
        log_px, run = ais_log_px(ctx.model, x, s.ais, s.chains, g, s.schedule, s.leapfrog, progress=bar)
        spread = run.log_w.std(0) if s.chains > 1 else torch.zeros(len(x), dtype=torch.float64)
        return {"log_px": log_px, "spread": spread, "accept": run.acceptance, "step": run.step_size}

    out = run_blocks(parts, one_block, ("log_px", "spread", "accept", "step"), data.images.device)
    bar.close()
    mean, se = mean_and_stderr(out["log_px"])
    extras = {
        "chain_spread": float(out["spread"].mean()),
        "acceptance": float(out["accept"].mean()),
        "final_step_size": float(out["step"].mean()),
    }
    if ctx.caps.observation:
        extras["observation_model"] = ctx.model.describe_observation()
    return Estimate(
        "ais",
        METHOD,
        settings={"steps": s.ais, "chains": s.chains, "leapfrog": s.leapfrog, "schedule": s.schedule},
        log_px=mean,
        stderr=se,
        n=len(out["log_px"]),
        seconds=time.perf_counter() - start,
        extras=extras,
        per_datum=out["log_px"],
    )
