"""Test classification error of a model with a classifier q(y|x), such as M2 (Kingma et al. 2014).

The semi-supervised number to compare: the share of labelled images whose most probable class under q(y|x)
is not their label, with its binomial standard error sqrt(e (1 - e) / n). As an estimator it runs on rank 0
for every model with a classifier (`capabilities(model).classifier`) evaluated on a labelled split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vaelab.data import Prepared
from vaelab.errors import DataError, VaelabError
from vaelab.evaluate import importance
from vaelab.evaluate.estimators import Context, Estimate, register_estimator
from vaelab.models.protocol import capabilities


@torch.inference_mode()
def classification_error(
    model: nn.Module, data: Prepared, batch_size: int = 1000, limit: int | None = None
) -> dict:
    """Error of argmax q(y|x) (`model.classify(x)`, a Categorical) on the labelled images of a split.

    Args:
        model: a model with a classifier q(y|x).
        data: a split with labels (-1 marks an unlabelled image, which is skipped).
        batch_size: images per call.
        limit: only the first `limit` images.
    """
    if not capabilities(model).classifier:
        raise VaelabError(f"classification error does not apply to {type(model).__name__}: it has no q(y|x)")
    if data.labels is None:
        raise DataError(f"{data.name or 'the split'} has no labels to score a classifier against")
    n = len(data) if limit is None else min(limit, len(data))
    wrong = total = 0
    for start in range(0, n, batch_size):
        index = slice(start, min(start + batch_size, n))
        y = data.labels_at(index)
        known = y >= 0
        predicted = model.classify(data.batch(index)).logits.argmax(-1)
        wrong += int(((predicted != y) & known).sum())
        total += int(known.sum())
    if total == 0:
        raise DataError(f"{data.name or 'the split'} has no labelled images to score a classifier against")
    error = wrong / total
    return {
        "method": "argmax q(y|x) against the split's labels",
        "error": error,
        "stderr": math.sqrt(error * (1 - error) / total),
        "errors": wrong,
        "num_images": total,
    }


def _notes(est: Estimate, _meta: Mapping[str, Any]) -> list[str]:
    x = est.extras
    return [
        f"classification error   {100 * x['error']:.2f}% +- {100 * x['stderr']:.2f}%"
        f"   argmax q(y|x), {x['errors']} of {est.n} images"
    ]


@register_estimator(
    "classification",
    applies=lambda caps, settings: caps.classifier and importance.applies(caps, settings),
    needs=("importance",),
    every_rank=False,
    notes=_notes,
    description="classification error of q(y|x) on the split's labels",
)
def classification(ctx: Context) -> Estimate | None:
    """The classifier's error on the evaluated images (none when the split has no labels).

    Args:
        ctx: the evaluation's context.
    """
    if ctx.data.labels is None:
        return None
    r = classification_error(ctx.model, ctx.data, limit=ctx.settings.limit)
    extras = {k: r[k] for k in ("error", "stderr", "errors")}
    return Estimate("classification", r["method"], n=r["num_images"], extras=extras)
