"""log p(x) of a model that computes it exactly (an autoregressive model: the chain rule), reported instead of
importance sampling.

Contract: the model has `exact_log_px(x) -> [B]` and `exact_likelihood = True` (`capabilities(model)`); the
per-image values are shared among the ranks in blocks of data (`vaelab.evaluate.blocks`).
"""

from __future__ import annotations

import time

import torch

from vaelab.evaluate.blocks import blocks, run_blocks
from vaelab.evaluate.estimators import Context, Estimate, mean_and_stderr, register_estimator

METHOD = "exact (chain rule): log p(x) = sum_i log p(x_i | x_<i), no sampling"


@register_estimator(
    "exact",
    applies=lambda caps, settings: caps.exact_likelihood,
    label="exact (chain rule)",
    row=lambda est: "no sampling",
    description="exact log p(x) of an autoregressive model",
)
@torch.inference_mode()
def exact(ctx: Context) -> Estimate:
    """Every evaluated image's exact log p(x), averaged.

    Args:
        ctx: the evaluation's context.
    """
    start = time.perf_counter()
    out = run_blocks(
        blocks(ctx.n, 200),
        lambda _, rows: {"log_px": ctx.model.exact_log_px(ctx.data.batch(rows))},
        ("log_px",),
        ctx.data.images.device,
    )
    mean, se = mean_and_stderr(out["log_px"])
    return Estimate(
        "exact", METHOD, log_px=mean, stderr=se, n=len(out["log_px"]), seconds=time.perf_counter() - start
    )
