"""A table run's figures: per-column reconstructions, and samples against the data's marginals.

A table's rows are not pictures, so the image figures (samples, reconstructions, manifold, interpolations)
are not drawn for it (`vaelab.viz.figureset` says so in one line); these two take their place, each column in
the user's units and levels (`TableSchema.to_frame`):
- `columns.png`: each test row's column beside its reconstruction (decoded posterior mean): a scatter on the
  diagonal for a continuous column, a confusion matrix for a binary or categorical one;
- `marginals.png`: each column's distribution in the test rows against rows drawn from the model (z from the
  prior, then x from p(x | z)): histograms, or level frequencies.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vaelab.data import Prepared
from vaelab.distributions.mixed import MixedLikelihood
from vaelab.distributions.sampling import sample
from vaelab.viz.grids import NotDrawn, plt, save_figure

TABLE_FIGURES = ("columns", "marginals")
NOT_PICTURES = "a table's rows are not pictures (columns.png and marginals.png show them)"


def is_table_model(model: object) -> bool:
    """The model's decoder is the mixed likelihood of table rows (`vaelab.distributions.mixed`)."""
    return isinstance(getattr(model, "likelihood", None), MixedLikelihood)


def _grid(n: int) -> tuple[plt.Figure, list[Any]]:
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def columns_figure(model: nn.Module, data: Prepared, path: str | os.PathLike, limit: int = 1000) -> Path:
    """Each column of up to `limit` test rows against its reconstruction (the decoded posterior mean).

    Args:
        model: a table model that encodes and decodes.
        data: the prepared test split (a table's).
        path: the PNG to write.
        limit: at most this many rows.
    """
    schema = data.table
    x = data.batch(slice(0, limit)).to(_device(model))
    if len(x) == 0:
        raise NotDrawn(f"the column reconstructions need a test row, and {data.name} has none")
    rec = model.decode(model.encode(x).mean).mean
    truth, got = schema.to_frame(x), schema.to_frame(rec)
    fig, axes = _grid(len(schema.columns))
    for ax, c in zip(axes, schema.columns):
        seen = truth[c.name].notna().to_numpy()
        t, r = truth[c.name][seen], got[c.name][seen]
        if c.kind == "continuous":
            tv, rv = t.to_numpy(float), r.to_numpy(float)
            ax.scatter(tv, rv, s=6, alpha=0.6)
            lo, hi = float(min(tv.min(), rv.min())), float(max(tv.max(), rv.max()))
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
            rmse = float(np.sqrt(np.mean((tv - rv) ** 2))) if len(tv) else float("nan")
            ax.set_title(f"{c.name}: RMSE {rmse:.3g}", fontsize=9)
            ax.set_xlabel("data", fontsize=8)
            ax.set_ylabel("reconstruction", fontsize=8)
        else:
            index = {lv: i for i, lv in enumerate(c.levels)}
            k = len(c.levels)
            m = np.zeros((k, k))
            for a, b in zip(t, r):
                m[index[a], index[b]] += 1
            ax.imshow(m, cmap="Blues")
            acc = np.trace(m) / max(m.sum(), 1)
            ax.set_title(f"{c.name}: {acc:.0%} right", fontsize=9)
            if k <= 12:
                labels = [str(v)[:8] for v in c.levels]
                ax.set_xticks(range(k), labels, fontsize=7, rotation=90)
                ax.set_yticks(range(k), labels, fontsize=7)
            ax.set_xlabel("reconstruction", fontsize=8)
            ax.set_ylabel("data", fontsize=8)
    fig.suptitle(f"{len(x)} rows of {data.name} and their reconstructions (decoded posterior mean)")
    fig.tight_layout()
    return save_figure(fig, path)


@torch.inference_mode()
def marginals_figure(
    model: nn.Module, data: Prepared, path: str | os.PathLike, n: int = 2000, seed: int = 0
) -> Path:
    """Each column's distribution in the test rows against `n` rows drawn from the model.

    Args:
        model: a table model with a prior and a decoder.
        data: the prepared test split (a table's).
        path: the PNG to write.
        n: rows drawn from the model.
        seed: the seed of the draws.
    """
    schema = data.table
    g = torch.Generator(device=_device(model)).manual_seed(seed)
    z = sample(model.prior(), (n,), g)
    drawn = model.decode(z).sample_with((), g)
    truth, fake = schema.to_frame(data.images), schema.to_frame(drawn)
    fig, axes = _grid(len(schema.columns))
    for ax, c in zip(axes, schema.columns):
        t = truth[c.name].dropna()
        f = fake[c.name]
        if c.kind == "continuous":
            tv, fv = t.to_numpy(float), f.to_numpy(float)
            lo, hi = np.percentile(np.concatenate([tv, fv]), [0.5, 99.5])
            bins = np.linspace(lo, hi, 30)
            ax.hist(tv, bins=bins, density=True, alpha=0.5, label=f"data ({len(tv)})")
            ax.hist(fv, bins=bins, density=True, alpha=0.5, label=f"model ({len(fv)})")
        else:
            k = len(c.levels)
            share_t = t.value_counts(normalize=True).reindex(list(c.levels), fill_value=0).to_numpy()
            share_f = f.value_counts(normalize=True).reindex(list(c.levels), fill_value=0).to_numpy()
            ax.bar(np.arange(k) - 0.2, share_t, 0.4, label="data")
            ax.bar(np.arange(k) + 0.2, share_f, 0.4, label="model")
            if k <= 12:
                ax.set_xticks(range(k), [str(v)[:8] for v in c.levels], fontsize=7, rotation=90)
        ax.set_title(f"{c.name} ({c.kind})", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"each column: {data.name} against {n} rows drawn from the model (z ~ p(z), x ~ p(x|z))")
    fig.tight_layout()
    return save_figure(fig, path)
