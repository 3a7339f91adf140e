"""The ELBO, E_q[log p(x, z) - log q(z|x)], as the mean log-weight over the importance-sampling pass's draws.

It needs no draws of its own: the IS estimator's K draws per image give it (a lower bound on log p(x) that
the IWAE bound tightens). Written to eval.json as {"method", "estimate", "stderr", "nll_bound",
"bits_per_dim"}, with "rec" and "kl" once the decomposition has taken it apart.
"""

from __future__ import annotations

from typing import Any

from vaelab.evaluate import importance
from vaelab.evaluate.estimators import (
    Context,
    Estimate,
    bits_per_dim,
    mean_and_stderr,
    register_estimator,
)


def _block(est: Estimate, dims: int) -> dict[str, Any]:
    return {
        "method": est.method,
        "estimate": est.log_px,
        "stderr": est.stderr,
        "nll_bound": -est.log_px,
        "bits_per_dim": bits_per_dim(-est.log_px, dims),
        **est.extras,
    }


def _row(est: Estimate) -> str:
    parts = (
        f" (E_q log p(x|z) {est.extras['rec']:.2f}, KL {est.extras['kl']:.2f})" if "rec" in est.extras else ""
    )
    return f"K={est.settings['num_samples']} draws{parts}"


@register_estimator(
    "elbo",
    applies=importance.applies,
    needs=("importance",),
    label="ELBO",
    row=_row,
    to_json=_block,
    description="the ELBO from the importance-sampling draws",
)
def elbo(ctx: Context) -> Estimate:
    """The mean over images of each image's mean log-weight.

    Args:
        ctx: the evaluation's context (after importance sampling).
    """
    res = ctx.estimates["importance"].result
    mean, se = mean_and_stderr(res.elbo)
    k = res.num_samples
    return Estimate(
        "elbo",
        f"mean log-weight over the same K = {k} draws of q(z|x)",
        settings={"num_samples": k},
        log_px=mean,
        stderr=se,
        n=len(res.elbo),
    )
