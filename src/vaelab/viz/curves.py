"""Training curves: each statistic metrics.jsonl records per epoch, for train / valid / test.

A VAE records the ELBO and its two terms, PixelCNN its exact log p(x), a GAN its players' losses: every
statistic a run has gets a panel (known ones first, named as the model defines them), so no run's curves are
a blank chart. The reconstruction term is E_q log p(x|z) for a model with a prior (a posterior q), and
log p(x|f(x)) for one without (an autoencoder's code f(x) is a point, not a posterior).
"""

from __future__ import annotations

import os
from pathlib import Path

from vaelab.models.protocol import capabilities
from vaelab.viz.grids import NotDrawn, plt, save_figure

SPLITS = (("train", "-"), ("valid", "--"), ("test", ":"))

TITLES = {
    "elbo": "ELBO (nats)",
    "iwae": "IWAE bound (nats)",
    "log_px": "log p(x) (nats)",
    "rec": "E_q log p(x|z) (nats)",
    "kl": "KL(q || p) (nats)",
    "d_loss": "discriminator loss",
    "g_loss": "generator loss",
    "d_real": "D(x) on real images",
    "d_fake": "D(G(z)) on generated images",
}

SHORT = {"elbo": "ELBO", "iwae": "IWAE bound", "log_px": "log p(x)", "rec": "reconstruction", "kl": "KL"}

# The reconstruction term, by whether the model has a prior (and so a posterior); None: not known.
REC_TITLES = {
    True: TITLES["rec"],
    False: "log p(x|f(x)) (nats)",
    None: "reconstruction log-likelihood (nats)",
}


def statistics(history: list[dict]) -> list[str]:
    """The statistics recorded as `{split}_{name}` in any record: the known ones in `TITLES`' order, then the
    rest by name.

    Args:
        history: metrics.jsonl's records, one per epoch.
    """
    found = {
        key[len(split) + 1 :]
        for r in history
        for key in r
        for split, _ in SPLITS
        if key.startswith(f"{split}_")
    }
    return [s for s in TITLES if s in found] + sorted(found - set(TITLES))


def curves_title(history: list[dict]) -> str:
    """What the curves show, in a few words ("ELBO, reconstruction and KL per epoch").

    Args:
        history: metrics.jsonl's records, one per epoch.
    """
    names = [SHORT.get(s, TITLES.get(s, s)) for s in statistics(history)]
    if not names:
        return "Statistics per epoch"
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"{listed} per epoch"


def curves_figure(history: list[dict], path: str | os.PathLike, model: object | None = None) -> Path:
    """One panel per recorded statistic (ELBO, reconstruction, KL; log p(x); a GAN's losses), per epoch, for
    train / valid / test.

    Args:
        history: metrics.jsonl's records, one per epoch.
        path: the PNG to write.
        model: the run's model, which names the reconstruction term (None: a neutral name).
    """
    if not history:
        raise NotDrawn("metrics.jsonl has no epochs yet (train the run first)")
    stats = statistics(history)
    if not stats:
        raise NotDrawn("metrics.jsonl records no per-split statistic to plot")
    has_prior = None if model is None else capabilities(model).prior
    titles = {**TITLES, "rec": REC_TITLES[has_prior]}
    fig, axes = plt.subplots(1, len(stats), figsize=(4.5 * len(stats), 3.6), squeeze=False)
    for ax, s in zip(axes[0], stats):
        for split, style in SPLITS:
            pts = [(r["epoch"], r[f"{split}_{s}"]) for r in history if f"{split}_{s}" in r and "epoch" in r]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", ms=2, label=split)
        ax.set_title(titles.get(s, s), fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)
