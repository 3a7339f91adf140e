"""Test classification error of a model with a classifier q(y|x), such as M2 (Kingma et al. 2014).

The semi-supervised number to compare: the share of labelled images whose most probable class under q(y|x)
is not their label, with its binomial standard error sqrt(e (1 - e) / n).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaelab.data import Prepared
from vaelab.errors import DataError


@torch.inference_mode()
def classification_error(
    model: nn.Module, data: Prepared, batch_size: int = 1000, limit: int | None = None
) -> dict:
    """Error of argmax q(y|x) (`model.classify(x)`, a Categorical) on the labelled images of a split."""
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
