"""Analogies (Kingma, Rezende, Mohamed & Welling 2014, figure 1): one image's style written at every label.

A model whose decoder takes a label splits an image into its label y and a style z (slant, thickness, stroke).
Each row takes one test image, infers its style as the mean of q(z|x,y) at the image's own label (or, for a
model whose encoder may take its classifier's label, at argmax q(y|x)), and decodes that one z at every label
y = 0..C-1: the same hand writing every digit. The first column is the test image as the model sees it.

Only the model contract is used (`capabilities(model)`: `labelled`, `label_for_encode`; `encode(x, y)`,
`decode(z, y)`, `classify(x)`), so the CVAE, M2, M1+M2, the auxiliary model and any labelled model a plugin
registers draw it alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from vaelab.data import Prepared
from vaelab.models.protocol import capabilities
from vaelab.viz.grids import DPI, GRID_SIDE, NotDrawn, capped, plt, save_figure, tile

GAP = 4  # white pixels between the test images' column and the decoded ones


class Analogies(NamedTuple):
    """The figure's content: inputs [R, C, H, W] (the test images as the model sees them), images
    [R, K, C, H, W] with images[r, k] = the mean of p(x | z_r, y=k) clipped to [0, 1], the styles z_r [R, D]
    (means of q(z|x,y)), the labels [R] they were inferred at, and whether those labels are the classifier's."""

    inputs: torch.Tensor
    images: torch.Tensor
    styles: torch.Tensor
    labels: torch.Tensor
    predicted: bool


def why_no_analogies(model: object) -> str | None:
    """Why `model` cannot draw analogies (one line), or None when it can: it needs a decoder that takes a label
    and an encoder q(z|x,y) that takes one (the image's own, or its classifier's).

    Args:
        model: the run's model.
    """
    caps, name = capabilities(model), type(model).__name__
    if not caps.labelled:
        return f"{name} takes no label y: analogies need a model whose decoder does (cvae, m2)"
    if caps.label_for_encode is None:
        return f"{name} has no encoder q(z|x,y) to infer an image's style z from"
    return None


@torch.inference_mode()
def analogies(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, classes: int | None = None
) -> Analogies:
    """Each image's style z_r = E q(z | x_r, y_r) decoded at labels 0..classes-1.

    y_r is the image's own label when the model needs one to encode (a conditional model: `y` is required),
    else argmax q(y|x_r) of its classifier (`y` is then ignored).

    Args:
        model: a labelled model that encodes (`why_no_analogies(model)` is None).
        x: the test images as the model's input [R, C, H, W].
        y: their labels [R] (required for a conditional model).
        classes: decode labels 0..classes-1 (default: all the model's C).
    """
    why = why_no_analogies(model)
    if why is not None:
        raise NotDrawn(why)
    caps = capabilities(model)
    predicted = caps.label_for_encode != "required"
    if predicted:
        y = model.classify(x).probs.argmax(-1)
    elif y is None:
        raise NotDrawn(f"{type(model).__name__} encodes q(z|x,y): the analogies need the test images' labels")
    y = y.to(x.device).long()
    z = model.encode(x, y).mean
    k = caps.num_classes if classes is None else min(classes, caps.num_classes)
    rows = [model.decode(z, torch.full_like(y, c)).mean for c in range(k)]
    images = torch.stack(rows, 1)
    if not bool(torch.isfinite(images).all()):
        raise NotDrawn(
            f"NaN or infinite values in {type(model).__name__}'s decoded pictures: nothing to show"
        )
    return Analogies(x, images.clamp(0.0, 1.0), z, y, predicted)


def spreads(a: Analogies) -> tuple[float, float]:
    """(along, down): the RMS pixel deviation of each cell from its row's mean (along a row only y changes) and
    from its column's mean (down a column only z changes), in units of the pixel range [0, 1].

    Args:
        a: what `analogies` returned.
    """
    im = a.images.flatten(2).double()
    along = (im - im.mean(1, keepdim=True)).pow(2).mean().sqrt()
    down = (im - im.mean(0, keepdim=True)).pow(2).mean().sqrt()
    return float(along), float(down)


def label_effect(a: Analogies) -> float:
    """How much the label changes the pictures against how much the style does: along / down of `spreads`
    (inf when the rows do not differ). Well below 1: the decoder mostly ignores y.

    Args:
        a: what `analogies` returned.
    """
    along, down = spreads(a)
    return along / down if down > 0 else float("inf")


IGNORED_LABEL = 0.5  # a label effect below this gets a note in the figure's title
FLAT = 0.01  # pictures whose RMS change along rows and down columns are both below this get a note


def figure_title(a: Analogies, seed: int) -> str:
    """The figure's title: what a row keeps, and a note when the label hardly changes the pictures (or neither
    label nor style does).

    Args:
        a: what `analogies` returned.
        seed: the seed the rows were drawn with.
    """
    at = "its classifier's label argmax q(y|x)" if a.predicted else "its own label"
    title = (
        f"Analogies (Kingma et al. 2014, fig. 1), seed {seed}: each row decodes one test image's style\n"
        f"z = mean of q(z|x,y) at {at}, at every label y"
    )
    effect, most = label_effect(a), max(spreads(a))
    if min(a.images.shape[:2]) > 1 and most < FLAT:
        title += (
            f"\nnote: the pictures hardly change with y or z (RMS {most:.3f} of the pixel range): the decoder "
            "draws about one picture"
        )
    elif min(a.images.shape[:2]) > 1 and effect < IGNORED_LABEL:
        title += (
            f"\nnote: y changes the pictures {effect:.2f}x as much as z does: the decoder mostly ignores y"
        )
    return title


def analogy_canvas(a: Analogies, gap: int = GAP) -> np.ndarray:
    """The figure's pixels: the test images' column, `gap` white pixels, then one column per label; cells are
    one white pixel apart (`grids.tile`), so cell (r, k) of the decoded block starts at row r * (H + 1) and
    column W + gap + k * (W + 1).

    Args:
        a: what `analogies` returned.
        gap: white pixels between the test images and the decoded block.
    """
    r, k = a.images.shape[:2]
    left = tile(a.inputs, 1)
    right = tile(a.images.reshape(r * k, *a.images.shape[2:]), k)
    white = np.ones((left.shape[0], gap, *left.shape[2:]), dtype=np.float32)
    return np.concatenate([left, white, right], axis=1)


def pick_rows(data: Prepared, rows: int, seed: int) -> torch.Tensor:
    """`rows` distinct test indices drawn with `seed` (all of them, in a seeded order, when the split has fewer).

    Args:
        data: the prepared test split.
        rows: how many.
        seed: the seed of the draw.
    """
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return order[:rows].to(data.images.device)


def analogies_figure(
    model: nn.Module, data: Prepared, path: str | os.PathLike, rows: int = 10, seed: int = 0
) -> Path:
    """Kingma et al. (2014)'s figure 1 as a PNG (written atomically): `rows` test images drawn with `seed`, each
    beside its style decoded at every label. At most `GRID_SIDE` rows and `GRID_SIDE` - 1 labels (a note says
    when a request is cut).

    Args:
        model: a labelled model that encodes (`why_no_analogies(model)` is None).
        data: the prepared test split (with labels, for a conditional model).
        path: the PNG to write.
        rows: how many test images.
        seed: which test images (a seeded draw).
    """
    why = why_no_analogies(model)
    if why is not None:
        raise NotDrawn(why)
    name = data.name or "the split"
    if len(data) == 0:
        raise NotDrawn(f"analogies need a test image, and {name} has none")
    needs_y = capabilities(model).label_for_encode == "required"
    if needs_y and data.labels is None:
        raise NotDrawn(
            f"{type(model).__name__} encodes q(z|x,y): the analogies need the test images' labels, and "
            f"{name} has none"
        )
    rows = capped(min(rows, len(data)), GRID_SIDE, "rows", path)
    classes = capabilities(model).num_classes
    shown = capped(classes, GRID_SIDE - 1, "labels", path)
    idx = pick_rows(data, rows, seed)
    a = analogies(model, data.batch(idx), data.labels_at(idx) if needs_y else None, shown)
    return _draw(a, path, classes, seed)


def _draw(a: Analogies, path: str | os.PathLike, classes: int, seed: int) -> Path:
    """The canvas with the labels along the top and each row's inferred label on the left."""
    canvas = analogy_canvas(a)
    r, k = a.images.shape[:2]
    h, w = a.inputs.shape[-2:]
    cell = 0.5  # inches per cell, at least one screen pixel per image pixel
    width = max(cell * (k + 1) + 1.2, 1.1 * canvas.shape[1] / DPI + 1.2)
    height = width * canvas.shape[0] / canvas.shape[1] + 1.3
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xticks(
        [(w - 1) / 2] + [w + GAP + c * (w + 1) + (w - 1) / 2 for c in range(k)],
        ["test"] + [str(c) for c in range(k)],
        fontsize=8,
    )
    ax.set_xlabel("label y" + ("" if k == classes else f" (0 to {k - 1} of {classes})"), fontsize=9)
    mark = "argmax q(y|x)" if a.predicted else "y"
    ax.set_yticks([i * (h + 1) + (h - 1) / 2 for i in range(r)], [str(int(v)) for v in a.labels], fontsize=8)
    ax.set_ylabel(f"style z inferred at {mark}", fontsize=9)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(figure_title(a, seed), fontsize=10)
    return save_figure(fig, path)
