"""Importance-sampled log p(x) (the IWAE bound, Burda et al. 2016) with q(z|x) as proposal, as an estimator.

Runs for every model with an importance sampler (`log_importance_weights`) unless it computes log p(x)
exactly; the per-image summaries of the weights that later estimators ask for (`weights=` in their
registrations, e.g. the PSIS k-hat) stream through the same pass. Its Estimate's `result` is the
`ImportanceResult`, which the ELBO, PSIS, classification and decomposition estimators read.
"""

from __future__ import annotations

from vaelab.errors import VaelabError
from vaelab.evaluate.estimators import ESTIMATORS, Context, Estimate, register_estimator
from vaelab.evaluate.loglik import importance_sampling
from vaelab.evaluate.settings import EvalSettings
from vaelab.models.protocol import Capabilities


def applies(caps: Capabilities, settings: EvalSettings) -> bool:
    """IS runs unless the model is exact, or has no importance sampler and is scored by AIS or quality alone.

    Args:
        caps: the model's capabilities.
        settings: the evaluation's settings.
    """
    return not caps.exact_likelihood and (caps.importance or not (settings.ais or settings.quality))


def _curve(est: Estimate, _meta: object) -> list[str]:
    curve = ", ".join(f"K={k}: {v['log_px']:.2f}" for k, v in est.extras["iwae_curve"].items())
    return [f"IWAE curve: {curve}"]


@register_estimator(
    "importance",
    applies=applies,
    label="IS (IWAE bound)",
    row=lambda est: f"K={est.settings['num_samples']}, mean ESS {est.extras['ess_mean']:.1f}",
    notes=_curve,
    description="importance-sampled log p(x) with q(z|x) as proposal, its ESS and IWAE curve",
)
def importance(ctx: Context) -> Estimate:
    """log p(x) by importance sampling with K = settings.importance proposals per image.

    Args:
        ctx: the evaluation's context.
    """
    caps, s = ctx.caps, ctx.settings
    if not caps.importance and not caps.encode and caps.decode:
        raise VaelabError(
            f"{ctx.model_name} has no encoder, so importance sampling does not apply: use --ais T "
            "(AIS under its stated observation model, Wu et al. 2017) and/or --quality N"
        )
    reductions = {
        e.name: e.weights for e in ESTIMATORS.values() if e.weights is not None and e.applies(caps, s)
    }
    res = importance_sampling(
        ctx.model,
        ctx.data,
        s.importance,
        limit=s.limit,
        progress=s.progress,
        seed=s.seed,
        reductions=reductions,
    )
    summary = res.summary()
    method = summary["method"]
    if caps.conditional:
        method += ", of log p(x|y) given each image's label"
    return Estimate(
        "importance",
        method,
        settings={"num_samples": s.importance},
        log_px=summary["log_px"],
        stderr=summary["stderr"],
        n=summary["num_images"],
        seconds=res.seconds,
        extras={k: summary[k] for k in ("ess_mean", "ess_min", "iwae_curve")},
        per_datum=res.log_px,
        result=res,
    )
