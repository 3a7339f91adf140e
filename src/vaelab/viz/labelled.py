"""Samples of class-conditional generators (the CVAE, M2): one row per label, many draws of z per row.

Within a row the label is fixed and only z changes, so the row shows how many different images one input
(the label) maps to: slant, thickness, style. That is the multi-modal output a regression onto the label's
mean image cannot give.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from vaelab.models.protocol import capabilities
from vaelab.viz.grids import save_panels, tile


def samples_by_label_figure(
    model: nn.Module, path: str | os.PathLike, per_label: int = 10, seed: int = 0
) -> Path:
    """A grid with one row per label 0..C-1 of `per_label` samples each, from `model.generate(n, g, y=labels)`.

    Args:
        model: a labelled generator (`num_classes`, `generate(n, generator, y=)`).
        path: the PNG to write.
        per_label: samples in each row.
        seed: the seed of the draws.
    """
    classes = capabilities(model).num_classes
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    labels = torch.arange(classes, device=device).repeat_interleave(per_label)
    with torch.inference_mode():
        images = model.generate(len(labels), g, y=labels)
    rows = "one row: label 0" if classes == 1 else f"rows: labels 0 to {classes - 1}"
    return save_panels(
        path,
        [(f"{rows}; columns: z ~ p(z)", tile(images, per_label))],
        f"{per_label} sample{'s' if per_label > 1 else ''} per label (seed {seed})",
    )
