"""Image grids and labelled panels of them (matplotlib), written atomically (PNG, or the format --out names).

A grid panel holds at most `GRID_SIDE` x `GRID_SIDE` pictures (`capped` says so in one line when a request
is cut), and a panel is drawn at least at the grid's own resolution, so no picture is shrunk below one
screen pixel per image pixel (a 100,000-sample grid squeezed into 500 pixels is moiré, not samples). A
figure that cannot be drawn from what a run has raises `NotDrawn`, whose message says why in one line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from vaelab.errors import ConfigError, VaelabError
from vaelab.io import atomic_save

GRID_SIDE = 32  # the most pictures along either side of one grid panel
DPI = 110  # the resolution every figure is saved at
# what a figure's --out may end in: the formats matplotlib writes with no outside program (pgf needs LaTeX; raw
# and rgba are headerless pixels; gif and avif depend on the Pillow build)
FIGURE_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


class NotDrawn(VaelabError):
    """A figure that cannot be drawn from what the run has (too few test images, no metrics yet); the
    message says why, in one line."""


def capped(asked: int, most: int, what: str, where: str | os.PathLike) -> int:
    """min(asked, most), with one `note:` line on stdout when the request is cut.

    Args:
        asked: how many were asked for.
        most: how many one grid holds.
        what: what is counted, plural ("samples", "pairs").
        where: the file drawn (named in the note).
    """
    if asked <= most:
        return asked
    print(
        f"note: {Path(where).name} holds {most:,} of the {asked:,} {what} asked "
        f"(a grid shows at most {GRID_SIDE} x {GRID_SIDE} pictures)"
    )
    return most


def tile(images: torch.Tensor, ncol: int, pad: int = 1) -> np.ndarray:
    """Images [N, C, H, W] in [0, 1] as one array [rows*(H+pad), ncol*(W+pad)] (or with 3 channels last).

    Args:
        images: the pictures, values clamped to [0, 1].
        ncol: pictures per row.
        pad: white pixels between pictures.
    """
    x = images.detach().float().clamp(0, 1).cpu().numpy()
    n, c, h, w = x.shape
    rows = max(1, -(-n // ncol))
    canvas = np.ones((c, rows * (h + pad) - pad, ncol * (w + pad) - pad), dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, ncol)
        canvas[:, r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = x[i]
    return canvas[0] if c == 1 else canvas.transpose(1, 2, 0)


def figure_format(path: str | os.PathLike) -> str:
    """The format a figure at `path` is written in: its suffix's (.pdf, .svg, .jpg, ...), PNG without one; a
    ConfigError naming the suffixes matplotlib writes for any other (it wrote PNG bytes under any name).

    Args:
        path: the figure's file.
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix and suffix not in FIGURE_FORMATS:
        raise ConfigError(
            f"{path}: a figure cannot be written as .{suffix}; name a file ending in "
            + ", ".join(f".{k}" for k in FIGURE_FORMATS)
        )
    return suffix or "png"


def save_figure(fig: plt.Figure, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Save a matplotlib figure atomically, in the format its suffix names (`figure_format`), and close it.

    Args:
        fig: the figure.
        path: the file to write (.png, .pdf, .svg, .jpg, ...).
        dpi: its resolution.
    """
    try:
        form = figure_format(path)
        return atomic_save(path, lambda f: fig.savefig(f, format=form, dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


def save_panels(
    path: str | os.PathLike,
    panels: Sequence[tuple[str, np.ndarray]],
    title: str | None = None,
    inches: float = 4.5,
) -> Path:
    """One row of titled image panels (tiles from `tile`) saved as a PNG, each at least as many screen pixels
    wide and high as its image has.

    Args:
        path: the PNG to write.
        panels: (title, tiled image) pairs, drawn left to right.
        title: the figure's title.
        inches: each panel's width, at least.
    """
    widest = max(img.shape[1] for _, img in panels)
    inches = max(inches, 1.1 * widest / DPI + 0.2)  # the height follows the aspect
    aspect = max(img.shape[0] / img.shape[1] for _, img in panels)
    height = inches * aspect + (0.7 if title else 0.4)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(inches * len(panels), height), squeeze=False, layout="constrained"
    )
    for ax, (name, img) in zip(axes[0], panels):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)
