"""Bidirectional Monte Carlo (Grosse et al. 2015): AIS forward and in reverse on data simulated from the
model, a stochastic lower and upper bound whose gap bounds AIS's error: the estimator behind `--bdmc N`.

Needs a prior and an unlabelled decoder (`capabilities(model)`); T is the AIS setting, or 500 when AIS is
off. Blocks of simulated data draw from their own seeds and are shared among ranks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from tqdm import tqdm

from vaelab.evaluate.ais import BLOCK_ROWS
from vaelab.evaluate.blocks import block_generator, blocks, min_block_size, my_blocks, run_blocks
from vaelab.evaluate.estimators import (
    Context,
    Estimate,
    mean_and_stderr,
    refuse_for_exact,
    register_estimator,
    require,
)
from vaelab.inference.ais import bdmc as bdmc_bounds

METHOD = "bidirectional Monte Carlo (Grosse et al. 2015) on data simulated from the model"


def refuse(ctx: Context) -> None:
    """BDMC needs a prior and a decoder of z alone; an exact model has no use for it.

    Args:
        ctx: the evaluation's context.
    """
    refuse_for_exact(ctx)
    require(ctx.model, ctx.caps, "prior", "decode", what="bidirectional Monte Carlo")


def _notes(est: Estimate, _meta: Mapping[str, Any]) -> list[str]:
    s, x = est.settings, est.extras
    return [
        f"BDMC on {s['num_data']} simulated images (T={s['steps']}, C={s['chains']}): lower {x['lower']:.2f}, "
        f"upper {x['upper']:.2f}, gap {x['gap']:.2f} +- {x['gap_stderr']:.2f}"
    ]


@register_estimator(
    "bdmc",
    applies=lambda caps, settings: settings.bdmc > 0,
    refuse=refuse,
    notes=_notes,
    description="bidirectional Monte Carlo bounds on simulated data (--bdmc N)",
)
def bdmc(ctx: Context) -> Estimate:
    """Lower and upper bounds on settings.bdmc simulated images, with T = settings.bdmc_steps.

    Args:
        ctx: the evaluation's context.
    """
    s = ctx.settings
    steps, n = s.bdmc_steps, s.bdmc
    start = time.perf_counter()
    parts = blocks(n, max(1, BLOCK_ROWS // (s.chains + 2)), min_size=min_block_size(s.chains + 2))
    bar = tqdm(
        total=2 * steps * len(my_blocks(parts)), disable=not ctx.progress, desc=f"BDMC T={steps} C={s.chains}"
    )

    def one_block(index: int, rows: slice) -> dict[str, torch.Tensor]:
        g = block_generator(s.seed, "bdmc", index, ctx.device)
        out = bdmc_bounds(
            ctx.model, rows.stop - rows.start, steps, s.chains, g, s.schedule, s.leapfrog, progress=bar
        )
        return {"lower": out["lower"], "upper": out["upper"]}

    out = run_blocks(parts, one_block, ("lower", "upper"), ctx.device)
    bar.close()
    lower, lo_se = mean_and_stderr(out["lower"])
    upper, up_se = mean_and_stderr(out["upper"])
    gap, gap_se = mean_and_stderr(out["upper"] - out["lower"])
    return Estimate(
        "bdmc",
        METHOD,
        settings={
            "num_data": n,
            "steps": steps,
            "chains": s.chains,
            "leapfrog": s.leapfrog,
            "schedule": s.schedule,
        },
        seconds=time.perf_counter() - start,
        extras={
            "lower": lower,
            "lower_stderr": lo_se,
            "upper": upper,
            "upper_stderr": up_se,
            "gap": gap,
            "gap_stderr": gap_se,
        },
    )
