"""The ELBO's gradient estimators and how much each spreads on the same q.

`ESTIMATORS` maps a name to a function (model, family, num_samples, generator) -> (objective [S] whose mean
to maximise, ELBO values [S], z): reparameterised gradients (Kingma & Welling 2014) or the score function
with a leave-one-out baseline (Williams 1992; Ranganath et al. 2014). `gradient_variance` and
`compare_estimators` measure their spread at a fixed q.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from vaelab.inference.families import Family
from vaelab.inference.toy import ToyModel


def reparam_elbo(
    model: ToyModel, family: Family, num_samples: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor]:
    """z = g(ε; φ) with ε ~ N(0, I): the gradient flows through the sample into log p(D, z) - log q(z).

    Args:
        model: the toy model.
        family: the fitted q.
        num_samples: draws from q.
        generator: the random stream; None: torch's global one.
    """
    seen: list[Tensor] = []

    def integrand(z: Tensor, q: Distribution) -> Tensor:
        seen.append(z)
        return model.log_joint(z) - q.log_prob(z)

    values = family.expectation(integrand, num_samples, generator)
    return values, values.detach(), seen[0]


def score_elbo(
    model: ToyModel, family: Family, num_samples: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor]:
    """∇ELBO = E_q[(f(z) - b) ∇log q(z)] with f = log p(D, z) - log q(z) and a leave-one-out baseline b.

    Needs only log q, not a differentiable sampler (REINFORCE); unbiased, but its variance grows with
    how much f varies under q.

    Args:
        model: the toy model.
        family: the fitted q.
        num_samples: draws from q.
        generator: the random stream; None: torch's global one.
    """
    z = family.sample(num_samples, generator)
    log_q = family.distribution().log_prob(z)
    f = (model.log_joint(z) - log_q).detach()
    n = f.shape[0]
    baseline = (f.sum() - f) / (n - 1) if n > 1 else torch.zeros_like(f)
    # The surrogate's value is not the ELBO, but its gradient is the estimator; shift it to equal f.
    surrogate = (f - baseline) * log_q
    return surrogate - surrogate.detach() + f, f, z


ESTIMATORS: dict[str, Callable[..., tuple[Tensor, Tensor, Tensor]]] = {
    "reparam": reparam_elbo,
    "score": score_elbo,
}


GRADIENT_REPEATS = 200  # fresh estimates per estimator in `compare_estimators`


def gradient_variance(
    model: ToyModel,
    family: Family,
    estimator: str,
    num_samples: int = 16,
    repeats: int = GRADIENT_REPEATS,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Spread of the ELBO gradient estimator at q's current parameters over `repeats` fresh estimates.

    Returns the total variance (trace of the covariance of the flattened gradient), the median and the
    99th percentile of each estimate's squared distance from the coordinatewise median of all of them, and
    the norm of the mean gradient, so estimators are compared on the same problem and the same q.

    The variance is the textbook measure, but where an estimator has heavy tails (the score function's
    (f - b) ∇log q at the rare draws in q's tails, where log p - log q is hundreds of nats below its mean)
    a few estimates make all of it, and a fresh random stream moves it by orders of magnitude. The median
    squared distance is the typical spread: for light tails it is the variance (in many dimensions
    |g - centre|² concentrates at the trace of the covariance), and one huge estimate cannot move it.

    Args:
        model: the toy model.
        family: the q at which to measure.
        estimator: a key of ESTIMATORS.
        num_samples: draws from q per estimate.
        repeats: how many fresh estimates.
        generator: the random stream; None: torch's global one.
    """
    grads = []
    for _ in range(repeats):
        family.zero_grad(set_to_none=True)
        objective, _, _ = ESTIMATORS[estimator](model, family, num_samples, generator)
        (-objective.mean()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in family.parameters() if p.grad is not None]))
    family.zero_grad(set_to_none=True)
    return spread(torch.stack(grads))


def spread(grads: Tensor) -> dict[str, float]:
    """How far apart gradient estimates lie: see `gradient_variance`.

    Args:
        grads: the estimates, one flattened gradient a row [R, P].
    """
    squared = ((grads - grads.median(0).values) ** 2).sum(1)
    from_mean = ((grads - grads.mean(0)) ** 2).sum(1).sort(descending=True).values
    top = math.ceil(len(from_mean) / 100)
    return {
        "total_variance": float(grads.var(0).sum()),
        "median_squared_deviation": float(torch.quantile(squared, 0.5)),
        "p99_squared_deviation": float(torch.quantile(squared, 0.99)),
        # the share of the variance made by the 1% of estimates farthest from the mean: about 1% where they
        # all lie about as far out (Gaussian estimates in many dimensions), near 100% where a rare few make it
        "top_1pct_variance_share": float(from_mean[:top].sum() / from_mean.sum().clamp_min(1e-300)),
        "mean_gradient_norm": float(grads.mean(0).norm()),
    }


def describe(comparison: dict[str, Any]) -> str:
    """`compare_estimators`' result in the words `vaelab vi` prints.

    Args:
        comparison: what `compare_estimators` returned.
    """
    share = {est: comparison[est]["top_1pct_variance_share"] for est in ESTIMATORS}
    return (
        f"typical gradient spread at the {comparison['at']}, score / reparam: {comparison['score_over_reparam']:.3g} "
        f"(the top 1% of estimates make {share['score']:.0%} of the score function's variance, "
        f"{share['reparam']:.0%} of reparam's)"
    )


def compare_estimators(
    model: ToyModel,
    family: Family,
    num_samples: int = 16,
    generator: torch.Generator | None = None,
    repeats: int = GRADIENT_REPEATS,
) -> dict[str, Any]:
    """`gradient_variance` of every estimator at q's current parameters, and `score_over_reparam`: the
    ratio of their typical spreads (median squared distances), which fresh random streams leave within
    tens of percent where the ratio of variances ranges over orders of magnitude.

    Args:
        model: the toy model.
        family: the q at which to measure.
        num_samples: draws from q per estimate.
        generator: the random stream; None: torch's global one.
        repeats: fresh estimates per estimator.
    """
    spread = {
        est: gradient_variance(model, family, est, num_samples, repeats, generator) for est in ESTIMATORS
    }
    typical = {est: s["median_squared_deviation"] for est, s in spread.items()}
    return {
        "at": "final q",
        "samples": num_samples,
        "repeats": repeats,
        **spread,
        "score_over_reparam": typical["score"] / max(typical["reparam"], 1e-300),
    }
