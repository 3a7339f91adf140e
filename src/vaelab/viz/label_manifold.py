"""The latent manifold of a model whose decoder takes a label: the decoded grid over a latent plane at each
label y (Kingma & Welling 2014's figure 4, one grid per y).

The plane is placed as `figures.manifold_plane` places an unlabelled model's: z itself when D <= 2 (or the two
`dims` asked for), else the top two principal directions of the test codes; a labelled model's test codes are
the means of q(z|x,y) at each image's own label (a conditional model) or at its classifier's label argmax
q(y|x). One grid of z is decoded at every label, so across labels only y changes. The report shows one
picture per label behind a label selector (`label_manifold_card`): each is the decoded grid itself, one image
pixel per screen pixel, as a PNG (`grid_png`); `vaelab manifold --label Y` draws one label as a titled
figure (`label_manifold_figure`).

Only the model contract is used (`capabilities(model)`: `labelled`, `label_for_encode`, `prior`, `latent_dim`;
`encode(x, y)`, `decode(z, y)`, `classify(x)`), so every labelled model draws it alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from vaelab.data import Prepared, iterate
from vaelab.errors import VaelabError
from vaelab.io import atomic_save
from vaelab.models.protocol import capabilities
from vaelab.viz.figures import plane_of_codes
from vaelab.viz.grids import GRID_SIDE, NotDrawn, capped, save_panels, tile
from vaelab.viz.page import esc, png_uri, selector_html
from vaelab.viz.trust import manifold_notes

MAX_LABELS = 32  # the most labels the report's selector offers (one embedded picture each)
CODES_LIMIT = 5000  # test images whose codes place the plane
SHOWN_WIDTH = 480  # a small grid is shown enlarged by a whole factor up to about this many screen pixels


class LabelManifold(NamedTuple):
    """The grid z [n * rows, D] (rows top to bottom, as `figures.manifold_figure` lays it out), the plane's
    description, the labels drawn, tiles[k] = the mean of p(x | z, y = labels[k]) clipped to [0, 1]
    [n * rows, C, H, W], and one list of notes per label (`trust.manifold_notes`)."""

    z: torch.Tensor
    what: str
    labels: tuple[int, ...]
    tiles: tuple[torch.Tensor, ...]
    notes: tuple[tuple[str, ...], ...]
    n: int


def why_no_label_manifold(model: object) -> str | None:
    """Why `model` has no per-label manifold (one line), or None when it has: it needs a decoder that takes a
    label y.

    Args:
        model: the run's model.
    """
    caps = capabilities(model)
    if not caps.labelled:
        return f"{type(model).__name__} takes no label y: its decoder maps z alone"
    if caps.latent_dim is None:
        return f"{type(model).__name__} has no latent space to grid"
    return None


def codes_how(model: object) -> str:
    """Where a labelled model's test codes come from, as a phrase ("at their own labels", ...).

    Args:
        model: a labelled model.
    """
    at = capabilities(model).label_for_encode
    return "at their classifier's labels argmax q(y|x)" if at == "optional" else "at their own labels"


@torch.inference_mode()
def label_codes(
    model: nn.Module, data: Prepared, limit: int = CODES_LIMIT, batch_size: int = 1000
) -> torch.Tensor:
    """The means of q(z|x,y) [N, D] of (the first `limit`) test images, y each image's own label (a conditional
    model) or its classifier's argmax q(y|x); NotDrawn when the model cannot encode at a label.

    Args:
        model: a labelled model.
        data: the prepared test split (with labels, for a conditional model).
        limit: at most this many images.
        batch_size: images per encoder pass.
    """
    caps, name = capabilities(model), type(model).__name__
    if caps.label_for_encode is None:
        raise NotDrawn(f"{name} has no encoder q(z|x,y) to place the manifold's plane with test codes")
    own = caps.label_for_encode == "required"
    if own and data.labels is None:
        raise NotDrawn(
            f"{name} encodes q(z|x,y): its test codes need the labels of {data.name or 'the split'}"
        )
    out, seen = [], 0
    for sl, x in iterate(data, batch_size):
        y = data.labels_at(sl).long() if own else model.classify(x).probs.argmax(-1)
        if own and bool(((y < 0) | (y >= caps.num_classes)).any()):
            raise NotDrawn(f"{data.name or 'the split'} has labels outside 0..{caps.num_classes - 1}")
        out.append(model.encode(x, y).mean)
        seen += len(x)
        if seen >= limit:
            break
    z = torch.cat(out)[:limit] if out else torch.zeros(0, caps.latent_dim)
    return z.to(next(model.parameters()).device)


def grid_codes(centre: torch.Tensor, axes: torch.Tensor, scales: torch.Tensor, n: int) -> torch.Tensor:
    """The grid [n * n, D] (a row [n, D] for one axis) at Gaussian quantiles of the plane, rows top to bottom
    with the second axis decreasing, as `figures.manifold_figure` draws it.

    Args:
        centre: the plane's centre [D].
        axes: its directions [k, D].
        scales: the spread along each [k].
        n: points per side.
    """
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.5 / n, 1 - 0.5 / n, n)).to(centre.device)
    if len(axes) == 1:
        return centre + q.reshape(-1, 1) * scales[0] * axes[0]
    u, v = torch.meshgrid(q, q.flip(0), indexing="xy")
    return centre + u.reshape(-1, 1) * scales[0] * axes[0] + v.reshape(-1, 1) * scales[1] * axes[1]


@torch.inference_mode()
def label_manifold(
    model: nn.Module,
    data: Prepared,
    n: int = 20,
    dims: tuple[int, int] | None = None,
    grid_range: str = "prior",
    labels: Sequence[int] | None = None,
) -> LabelManifold:
    """One grid of z over the plane `label_plane` places, decoded at each label (default: all 0..C-1).

    Args:
        model: a labelled model that decodes (`why_no_label_manifold(model)` is None).
        data: the prepared test split (its codes place the plane and check the prior's coverage).
        n: the grid's side.
        dims: two latent dimensions to span the plane, or None.
        grid_range: "prior" or "codes" (see `vaelab.viz.figures.manifold_plane`).
        labels: the labels to decode at.
    """
    why = why_no_label_manifold(model)
    if why is not None:
        raise NotDrawn(why)
    caps = capabilities(model)
    has_prior = caps.prior and grid_range == "prior"
    needs_codes = not (has_prior and (caps.latent_dim <= 2 or dims is not None))
    z = None
    if needs_codes:
        z = label_codes(model, data)
    elif caps.label_for_encode is not None:  # only to check the prior's coverage: drawn without them
        try:
            z = label_codes(model, data)
        except NotDrawn:
            z = None
    centre, axes, scales, what = plane_of_codes(model, z, dims, grid_range, "the test split")
    grid = grid_codes(centre, axes, scales, n)
    on_plane = (z - centre) @ axes.T / scales if has_prior and z is not None else None
    real = next((x for _, x in iterate(data, 500)), None)
    labels = tuple(range(caps.num_classes)) if labels is None else tuple(int(k) for k in labels)
    tiles, notes = [], []
    for k in labels:
        y = torch.full(grid.shape[:-1], k, dtype=torch.long, device=grid.device)
        pictures = model.decode(grid, y).mean
        if not bool(torch.isfinite(pictures).all()):
            raise NotDrawn(
                f"NaN or infinite values in {type(model).__name__}'s decoded pictures at label {k}"
            )
        tiles.append(pictures.clamp(0.0, 1.0))
        notes.append(tuple(manifold_notes(tiles[-1], n, on_plane, real)))
    return LabelManifold(grid, what, labels, tuple(tiles), tuple(notes), n)


def grid_pixels(tiles: torch.Tensor, n: int) -> np.ndarray:
    """The decoded grid as 8-bit pixels [H, W] (or [H, W, 3]), tiles side by side without gaps: round(255 x).

    Args:
        tiles: pictures [n * rows, C, H, W] in [0, 1].
        n: tiles per row.
    """
    return np.rint(tile(tiles, n, pad=0) * 255.0).astype(np.uint8)


def grid_png(tiles: torch.Tensor, n: int, path: str | os.PathLike) -> Path:
    """The decoded grid as a PNG of its own pixels (`grid_pixels`), written atomically.

    Args:
        tiles: pictures [n * rows, C, H, W] in [0, 1].
        n: tiles per row.
        path: the PNG to write.
    """
    image = Image.fromarray(grid_pixels(tiles, n))
    return atomic_save(path, lambda f: image.save(f, format="png"))


def label_manifold_figure(
    model: nn.Module,
    data: Prepared,
    path: str | os.PathLike,
    y: int,
    n: int = 20,
    dims: tuple[int, int] | None = None,
    grid_range: str = "prior",
) -> Path:
    """The manifold at label y as a titled figure, as `figures.manifold_figure` draws an unlabelled model's.

    Args:
        model: a labelled model that decodes.
        data: the prepared test split.
        path: the PNG to write.
        y: the label, 0..C-1.
        n: the grid's side (at most `GRID_SIDE`).
        dims: two latent dimensions to span the plane, or None.
        grid_range: "prior" or "codes" (see `vaelab.viz.figures.manifold_plane`).
    """
    n = capped(n, GRID_SIDE, "pictures per side", path)
    m = label_manifold(model, data, n, dims, grid_range, labels=(y,))
    title = "\n".join([f"latent manifold at label y = {y}", *m.notes[0]])
    return save_panels(path, [(m.what, tile(m.tiles[0], n, pad=0))], title, inches=7)


def label_manifold_card(
    model: nn.Module,
    load_test: Callable[[], Prepared],
    tmp: Path,
    n: int = 20,
    title: str = "Latent manifold",
) -> str:
    """The report's card: one embedded picture per label (at most `MAX_LABELS`) behind a label selector, the
    first shown without script; a one-line note in place of the pictures when they cannot be drawn.

    Args:
        model: the run's labelled model.
        load_test: gives the run's prepared test split.
        tmp: a scratch folder for the PNGs.
        n: the grid's side.
        title: the card's heading.
    """
    classes = capabilities(model).num_classes or 0
    shown = min(classes, MAX_LABELS)
    caption = (
        "A grid of z over a latent plane ({what}; Kingma & Welling 2014, figure 4), decoded at the label y "
        "picked: across labels only y changes. The plane's test codes are the means of q(z|x,y) of the test "
        f"images {codes_how(model)}." + (f" Labels 0 to {shown - 1} of {classes}." if shown < classes else "")
    )
    try:
        m = label_manifold(model, load_test(), n, labels=range(shown))
        views = [
            (str(k), png_uri(grid_png(t, m.n, tmp / f"manifold-y{k}.png")), notes)
            for k, t, notes in zip(m.labels, m.tiles, m.notes)
        ]
        wide = int(m.tiles[0].shape[-1]) * m.n
    except VaelabError as e:
        note = f"not drawn: {' '.join(str(e).split())}"
        what = "z[0], z[1] or the test codes' top two principal directions, at Gaussian quantiles"
        return (
            f'<figure class="card"><h3>{esc(title)}</h3><p class="note">{esc(note)}</p>'
            f"<figcaption>{esc(caption.format(what=what))}</figcaption></figure>"
        )
    width = wide * max(1, SHOWN_WIDTH // wide)  # whole screen pixels per image pixel
    return selector_html("label-manifold", title, "label y", views, caption.format(what=m.what), width)
