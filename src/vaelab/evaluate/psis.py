"""When an importance-sampled log p(x) cannot be trusted: the Pareto-smoothed importance sampling diagnostic
(Vehtari, Simpson, Gelman, Yao & Gabry, "Pareto smoothed importance sampling", 2015; JMLR 2024).

Per image, a generalized Pareto distribution is fitted to the largest of its K importance weights; its shape
k-hat estimates the weights' tail: they have finite moments of order below 1/k. With k-hat <= 0.5 the
weights have a finite variance, up to 0.7 the estimate is still usable, and above 0.7 its error falls too
slowly with K to be trusted. The fit is ArviZ's own (`arviz.psislw`, the same k-hat ArviZ reports for
PSIS-LOO); the report gives the share of images above 0.7, the mean and largest k-hat, ArviZ's counts per
range and its sample-size threshold min(1 - 1/log10 K, 0.7).

Contract: an estimator that reads the importance-sampling pass (`weights=`): each block of images keeps its
K log-weights while they stream by (the block's size is bounded, see `importance_sampling`) and fits them
when the block ends, so nothing of size [K, N] is kept for the split. It applies with K >= 21: ArviZ fits
the ceil(min(K / 5, 3 sqrt(K))) largest weights and needs more than 4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from vaelab.evaluate import importance
from vaelab.evaluate.estimators import Context, Estimate, register_estimator
from vaelab.evaluate.settings import EvalSettings
from vaelab.inference.diagnostics import arviz_module
from vaelab.models.protocol import Capabilities

THRESHOLD = 0.7
MIN_SAMPLES = 21
METHOD = (
    "Pareto-smoothed importance sampling diagnostic (Vehtari et al. 2024): k-hat of a generalized Pareto "
    "fit to the largest of each image's K importance weights (arviz.psislw); above 0.7 the image's IS "
    "log p(x) is not to be trusted"
)


def pareto_k(log_w: np.ndarray | torch.Tensor) -> np.ndarray:
    """k-hat of each row's weights, by ArviZ's PSIS (relative efficiency 1: independent draws).

    A row whose largest weights tie, leaving too few above the cutoff to fit, gets ArviZ's k-hat = inf.

    Args:
        log_w: log importance weights [B, K] (one row per image).
    """
    psislw = arviz_module().psislw
    rows = np.asarray(log_w, dtype=np.float64)
    _, k = psislw(rows, reff=1.0)
    return np.asarray(k, dtype=np.float64).reshape(len(rows))


class ParetoTail:
    """The per-image reduction of the IS pass: keeps a block's log-weights, fits each image's at the end.

    Args:
        num_samples: K.
        batch: images in the block.
        device: where the weights arrive.
    """

    def __init__(self, num_samples: int, batch: int, device: torch.device) -> None:
        self.parts: list[torch.Tensor] = []

    def add(self, log_w: torch.Tensor) -> None:
        """Keep the next chunk of log-weights [c, B]."""
        self.parts.append(log_w.detach().to("cpu", torch.float64))

    def value(self) -> torch.Tensor:
        """k-hat of every image of the block, [B] (float64)."""
        rows = torch.cat(self.parts).T.contiguous().numpy()
        self.parts = []
        return torch.from_numpy(pareto_k(rows))


def good_k(num_samples: int) -> float:
    """ArviZ's sample-size threshold min(1 - 1/log10 K, 0.7): below it PSIS with K draws is reliable.

    Args:
        num_samples: K.
    """
    return min(1 - 1 / math.log10(num_samples), THRESHOLD)


def summarize(k: torch.Tensor, num_samples: int) -> dict[str, Any]:
    """What eval.json reports of the k-hats: mean (of the fitted ones), max, shares above the thresholds,
    and ArviZ's counts per range (good <= 0.5 < ok <= 0.7 < bad <= 1 < very bad; an unfitted image is very
    bad, as ArviZ's k = inf).

    Args:
        k: k-hat per image [N].
        num_samples: K.
    """
    k = k.double()
    fitted = k[torch.isfinite(k)]
    gk = good_k(num_samples)
    above = k > THRESHOLD
    return {
        "k_hat_mean": float(fitted.mean()) if len(fitted) else math.nan,
        "k_hat_max": float(k.max()),
        "share_above_threshold": float(above.double().mean()),
        "images_above_threshold": int(above.sum()),
        "good_k": gk,
        "share_above_good_k": float((k > gk).double().mean()),
        "counts": {
            "good": int((k <= 0.5).sum()),
            "ok": int(((k > 0.5) & (k <= THRESHOLD)).sum()),
            "bad": int(((k > THRESHOLD) & (k <= 1)).sum()),
            "very_bad": int((k > 1).sum()),
        },
        "not_fitted": int((~torch.isfinite(k)).sum()),
    }


def applies(caps: Capabilities, settings: EvalSettings) -> bool:
    """With importance sampling, when K leaves a tail to fit.

    Args:
        caps: the model's capabilities.
        settings: the evaluation's settings.
    """
    return importance.applies(caps, settings) and settings.importance >= MIN_SAMPLES


def _notes(est: Estimate, _meta: Mapping[str, Any]) -> list[str]:
    x = est.extras
    return [
        f"PSIS k-hat of the IS weights (Vehtari et al.): mean {x['k_hat_mean']:.2f}, max {x['k_hat_max']:.2f}; "
        f"{100 * x['share_above_threshold']:.1f}% of {est.n} images above {THRESHOLD} "
        "(their IS log p(x) is not to be trusted)"
    ]


@register_estimator(
    "psis",
    applies=applies,
    needs=("importance",),
    weights=ParetoTail,
    notes=_notes,
    description="PSIS k-hat of each image's importance weights (Vehtari et al. 2024)",
)
def psis(ctx: Context) -> Estimate:
    """The k-hats the importance-sampling pass fitted, summarised.

    Args:
        ctx: the evaluation's context (after importance sampling).
    """
    res = ctx.estimates["importance"].result
    k = res.reduced["psis"]
    return Estimate(
        "psis",
        METHOD,
        settings={"num_samples": res.num_samples, "threshold": THRESHOLD},
        n=len(k),
        extras=summarize(k, res.num_samples),
        per_datum=k,
    )
