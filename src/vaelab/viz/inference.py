"""Figures for variational inference and MCMC on posteriors whose truth is known: p(z | D) against q (the
tutorials' first figure), the ELBO climbing toward log p(D) with the KL gap shrinking, samples over the
exact density's contours, trace plots, and the 1/sqrt(N) fall of a Monte Carlo error.

Contours are highest-density regions: the lines enclose 50%, 90% and 99% of the mass, for the exact
posterior and for q alike, so the two are compared on the same footing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.distributions import Distribution

from vaelab.inference.toy import ToyModel
from vaelab.viz.grids import plt, save_figure

MASSES = (0.99, 0.9, 0.5)
CHAIN_COLOURS = plt.get_cmap("tab10").colors


def density_on_grid(model: ToyModel, q: Distribution | None = None) -> np.ndarray:
    """The exact posterior density (q None) or q's density on the model's grid, shaped like the grid.

    Args:
        model: a toy model with a grid over its posterior.
        q: a fitted approximation, or None for the exact posterior.
    """
    g = model.grid
    if q is None:
        return g.as_array(g.log_density.exp())
    with torch.no_grad():
        log_q = torch.cat([q.log_prob(c) for c in g.points.split(65536)])
    return g.as_array(log_q.exp())


def _marginal(density: np.ndarray, model: ToyModel, pair: tuple[int, int]) -> np.ndarray:
    """Integrate a density on the grid over the axes not in `pair`."""
    axes = model.grid.axes
    other = tuple(a for a in range(density.ndim) if a not in pair)
    cell = np.prod([axes[a][1] - axes[a][0] for a in other]) if other else 1.0
    return density.sum(axis=other) * cell if other else density


def hdr_levels(density: np.ndarray, masses: Sequence[float] = MASSES) -> list[float]:
    """Density thresholds whose super-level sets hold the given fractions of the mass (increasing).

    Args:
        density: values on a regular grid.
        masses: the fractions of the mass each level encloses.
    """
    d = np.sort(density.ravel())[::-1]
    cum = np.cumsum(d) / d.sum()
    levels = sorted({float(d[min(np.searchsorted(cum, m), len(d) - 1)]) for m in masses})
    return levels if len(levels) > 1 else [levels[0], float(d[0])]


def _zoom(ax, model: ToyModel, pair: tuple[int, int], densities: Sequence[np.ndarray]) -> None:
    """Limit the axes to where any of the densities (on the grid) exceeds 1/1000 of its peak, plus 15%."""
    axes = model.grid.axes
    dims = (pair[0],) if model.dim == 1 else pair
    for k, d in enumerate(dims):
        keep = np.zeros(len(axes[d]), dtype=bool)
        for dens in densities:
            m = dens if model.dim == 1 else _marginal(dens, model, pair)
            other = tuple(a for a in range(m.ndim) if a != k)
            profile = m.max(axis=other) if other else m
            keep |= profile > 1e-3 * profile.max()
        lo, hi = axes[d][keep].min(), axes[d][keep].max()
        pad = 0.15 * (hi - lo)
        (ax.set_xlim if k == 0 else ax.set_ylim)(max(axes[d][0], lo - pad), min(axes[d][-1], hi + pad))


def _pairs(dim: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(dim) for j in range(i + 1, dim)] or [(0, 0)]


def _draw_exact(ax, model: ToyModel, pair: tuple[int, int], exact: np.ndarray) -> None:
    axes = model.grid.axes
    if model.dim == 1:
        ax.fill_between(axes[0], exact, color="0.75", label="exact p(z | D)")
        ax.set_xlabel(model.labels[0])
        return
    m = _marginal(exact, model, pair)
    levels = [*hdr_levels(m), float(m.max()) * 1.01]
    ax.contourf(axes[pair[0]], axes[pair[1]], m.T, levels=levels, cmap="Greys", alpha=0.8)
    ax.set_xlabel(model.labels[pair[0]])
    ax.set_ylabel(model.labels[pair[1]])


def posterior_vs_q(
    model: ToyModel, fits: Sequence[tuple[str, Distribution]], path: str | os.PathLike
) -> Path:
    """One column per fitted q: the exact posterior (grey, filled) with q over it (red lines); 3-D models
    get one row per pair of coordinates (2-D marginals).

    Args:
        model: a toy model with a grid over its posterior.
        fits: (title, fitted q) pairs.
        path: the PNG to write.
    """
    exact = density_on_grid(model)
    pairs = _pairs(model.dim)
    # Fits side by side in one row; with several pairs (3-D), one row per fit and one column per pair.
    rows, cols = (1, len(fits)) if len(pairs) == 1 else (len(fits), len(pairs))
    fig, axs = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    for k, (title, q) in enumerate(fits):
        dq = density_on_grid(model, q)
        for j, pair in enumerate(pairs):
            ax = axs[0, k] if len(pairs) == 1 else axs[k, j]
            _draw_exact(ax, model, pair, exact)
            if model.dim == 1:
                ax.plot(model.grid.axes[0], dq, color="C3", lw=2, label="q(z)")
                ax.legend(loc="upper right", fontsize=8)
            else:
                mq = _marginal(dq, model, pair)
                ax.contour(
                    model.grid.axes[pair[0]],
                    model.grid.axes[pair[1]],
                    mq.T,
                    levels=hdr_levels(mq),
                    colors="C3",
                )
            _zoom(ax, model, pair, [exact, dq])
            if j == 0 or len(pairs) == 1:
                ax.set_title(title, fontsize=10)
    if model.dim > 1:
        fig.text(
            0.5,
            0.005,
            "grey: exact p(z | D); red: q (lines hold 50/90/99% of the mass)",
            ha="center",
            fontsize=8,
        )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return save_figure(fig, path)


def elbo_curve(
    traces: Sequence[tuple[str, dict[str, np.ndarray], float]], log_evidence: float, path: str | os.PathLike
) -> Path:
    """The ELBO per step (noisy estimate and its running mean) climbing toward the line log p(D); the
    shaded gap up to the line is the exact KL(q || p); below, both KLs on a log scale.

    Args:
        traces: (title, trace, final KL(q || p)) per fit; a trace holds arrays step, elbo, kl, kl_forward
            and q_mass (the share of q's mass on the grid; NaN KL where it was not computed).
        log_evidence: the exact log p(D).
        path: the PNG to write.
    """
    fig, axs = plt.subplots(
        2, len(traces), figsize=(6.0 * len(traces), 6.2), squeeze=False, height_ratios=(2.2, 1)
    )
    for col, (title, tr, final_kl) in enumerate(traces):
        ax, ax_kl = axs[0, col], axs[1, col]
        step, elbo = tr["step"], tr["elbo"]
        has = ~np.isnan(tr["kl"])
        window = max(1, len(step) // 50)
        smooth = np.convolve(elbo, np.ones(window) / window, mode="valid")
        ax.plot(step, elbo, color="C0", lw=0.5, alpha=0.35, label="ELBO estimate (this step's draws)")
        ax.plot(step[window - 1 :], smooth, color="C0", lw=1.5, label=f"ELBO, mean of {window} steps")
        exact_elbo = np.where(np.abs(tr["q_mass"][has] - 1) < 0.01, log_evidence - tr["kl"][has], np.nan)
        ax.plot(step[has], exact_elbo, color="k", lw=1, label="log p(D) − KL(q‖p), KL by quadrature")
        ax.fill_between(step[has], exact_elbo, log_evidence, color="C3", alpha=0.18, label="gap = KL(q‖p)")
        ax.axhline(log_evidence, color="C3", ls="--", lw=1.5, label=f"log p(D) = {log_evidence:.4f}")
        tail = np.concatenate([elbo[len(elbo) // 10 :], exact_elbo[len(exact_elbo) // 10 :]])
        tail = tail[np.isfinite(tail)]
        lo = float(np.nanpercentile(tail, 1))
        ax.set_ylim(lo - 0.05 * (log_evidence - lo), log_evidence + 0.12 * (log_evidence - lo) + 1e-9)
        ax.set_title(f"{title}: final KL(q‖p) = {final_kl:.4f}", fontsize=10)
        ax.set_ylabel("nats")
        ax.legend(fontsize=7, loc="lower right")
        # Only where the grid resolves q (it holds q's mass to 1%): elsewhere the quadrature KL is not a number
        # to trust (q far outside the grid, or a needle between its points, early in a fit).
        resolved = has & (np.abs(tr["q_mass"] - 1) < 0.01)
        ax_kl.semilogy(
            step[resolved], np.maximum(tr["kl"][resolved], 1e-8), ".-", ms=2, color="C3", label="KL(q‖p)"
        )
        ax_kl.semilogy(step[has], np.maximum(tr["kl_forward"][has], 1e-8), color="C2", label="KL(p‖q)")
        ax_kl.set_xlabel("step")
        ax_kl.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def samples_over_density(model: ToyModel, samples: np.ndarray, title: str, path: str | os.PathLike) -> Path:
    """Draws [C, N, D] (one colour per chain) over the exact posterior's contours; 1-D: a histogram of
    all draws against the exact density.

    Args:
        model: a toy model with a grid over its posterior.
        samples: the chains' draws [C, N, D].
        title: the figure's title.
        path: the PNG to write.
    """
    exact = density_on_grid(model)
    pairs = _pairs(model.dim)
    fig, axs = plt.subplots(1, len(pairs), figsize=(4.8 * len(pairs), 4.2), squeeze=False)
    per_chain = max(1, 3000 // samples.shape[0])
    for ax, pair in zip(axs[0], pairs):
        _draw_exact(ax, model, pair, exact)
        _zoom(ax, model, pair, [exact])
        if model.dim == 1:
            ax.hist(
                samples.reshape(-1), bins=80, density=True, histtype="step", color="C0", lw=1.5, label="draws"
            )
            ax.legend(fontsize=8)
            continue
        for c, chain in enumerate(samples):
            thin = chain[:: max(1, len(chain) // per_chain)]
            colour = CHAIN_COLOURS[c % len(CHAIN_COLOURS)]
            ax.scatter(thin[:, pair[0]], thin[:, pair[1]], s=3, alpha=0.5, color=colour, label=f"chain {c}")
        if pair == pairs[0] and samples.shape[0] <= 8:
            ax.legend(fontsize=7, markerscale=3, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def trace_plot(
    model: ToyModel, samples: np.ndarray, warmup: np.ndarray, title: str, path: str | os.PathLike
) -> Path:
    """Each coordinate against the iteration, one line per chain; warm-up shaded, exact mean dashed.

    Args:
        model: a toy model with a known posterior mean.
        samples: the chains' kept draws [C, N, D].
        warmup: the chains' warm-up draws [C, W, D].
        title: the figure's title.
        path: the PNG to write.
    """
    num_chains, n, dim = samples.shape
    w = warmup.shape[1]
    full = np.concatenate([warmup, samples], axis=1)
    fig, axs = plt.subplots(dim, 1, figsize=(9, 2.0 * dim + 0.6), squeeze=False, sharex=True)
    for d in range(dim):
        ax = axs[d, 0]
        for c in range(num_chains):
            ax.plot(np.arange(w + n), full[c, :, d], lw=0.5, color=CHAIN_COLOURS[c % len(CHAIN_COLOURS)])
        if w:
            ax.axvspan(0, w, color="0.9", zorder=0)
        ax.axhline(model.exact.mean[d], color="k", ls="--", lw=1)
        ax.set_ylabel(model.labels[d])
    axs[0, 0].set_title(f"{title} (warm-up shaded; dashed: exact mean)", fontsize=10)
    axs[-1, 0].set_xlabel("iteration")
    fig.tight_layout()
    return save_figure(fig, path)


def error_curve_plot(curve: dict, title: str, path: str | os.PathLike) -> Path:
    """Root-mean-square error of n-draw means (in posterior sds) against n, log-log, with the prediction
    sqrt(τ / n) and a 1/sqrt(n) guide.

    Args:
        curve: lists n, rmse and predicted_rmse, and the fitted log-log slope.
        title: the figure's title.
        path: the PNG to write.
    """
    n, rmse, pred = (np.asarray(curve[k], dtype=float) for k in ("n", "rmse", "predicted_rmse"))
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    ax.loglog(n, rmse, "o-", color="C0", label=f"measured (fitted slope {curve['slope']:.2f})")
    ax.loglog(n, pred, "--", color="C3", label="sqrt(τ / n), τ from the ESS")
    ax.loglog(n, rmse[0] / np.sqrt(n / n[0]), ":", color="0.4", label="slope −1/2")
    ax.set_xlabel("draws per estimate n")
    ax.set_ylabel("RMS error of the mean (posterior sds)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
