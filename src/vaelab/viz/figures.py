"""What a model learned, as pictures: samples, reconstructions, the latent manifold, interpolations, latents.

Only the public protocol is used (`encode`, `decode`, `prior`, and `generate(n, generator)` for models that
sample without a single latent layer), and `capabilities(model)` says which of these a model has, so every
model draws what applies to it (`applicable`). The manifold follows Kingma & Welling (2014, figure 4): a grid
of z at Gaussian quantiles, decoded.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vaelab.data import Prepared, iterate
from vaelab.distributions.sampling import sample
from vaelab.models.protocol import capabilities
from vaelab.viz.grids import plt, save_figure, save_panels, tile
from vaelab.viz.labelled import samples_by_label_figure


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def decoded(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The decoded picture of each z: the mean of p(x|z), clipped to [0, 1].

    Args:
        model: a model that decodes.
        z: codes [..., D].
    """
    return model.decode(z).mean.clamp(0.0, 1.0)


@torch.inference_mode()
def codes(model: nn.Module, data: Prepared, limit: int | None = None, batch_size: int = 1000) -> torch.Tensor:
    """Posterior means E_q[z|x] [N, D] over (the first `limit` images of) a split.

    Args:
        model: a model that encodes.
        data: the prepared split.
        limit: at most this many images (all when None).
        batch_size: images per encoder pass.
    """
    out = []
    seen = 0
    for _, x in iterate(data, batch_size):
        out.append(model.encode(x).mean)
        seen += len(x)
        if limit is not None and seen >= limit:
            break
    z = torch.cat(out)
    return z if limit is None else z[:limit]


def latent_dim(model: nn.Module, data: Prepared) -> int:
    """D, read off the encoder.

    Args:
        model: a model that encodes.
        data: a prepared split (its first image is encoded).
    """
    with torch.inference_mode():
        return model.encode(data.batch(slice(0, 1))).mean.shape[-1]


def samples_figure(
    model: nn.Module,
    path: str | os.PathLike,
    n: int = 64,
    seed: int = 0,
    train_codes: torch.Tensor | None = None,
) -> Path:
    """A grid of model samples: `generate(n, generator)` when the model has it (ancestral samplers), else
    decoded prior draws; for a model without a prior (an autoencoder), two grids that show why. A model whose
    generator takes a label (`num_classes`) gets one row of samples per label.

    Args:
        model: a model that samples or decodes (`applicable(model)["samples"]`).
        path: the PNG to write.
        n: how many samples (per label: n / num_classes, rounded up).
        seed: the seed of the draws.
        train_codes: posterior means of training images [N, D], for a model without a prior or sampler
            (the Gaussian fitted to them is the second grid).
    """
    from vaelab.models.autoencoder import fitted_gaussian

    caps = capabilities(model)
    if caps.labelled:
        return samples_by_label_figure(model, path, per_label=math.ceil(n / caps.num_classes), seed=seed)

    dev = _device(model)
    g = torch.Generator(device=dev).manual_seed(seed)
    ncol = math.ceil(math.sqrt(n))
    if caps.sampler:
        with torch.inference_mode():
            images = model.generate(n, g)
        return save_panels(path, [("samples", tile(images, ncol))], f"{n} samples (seed {seed})")
    if caps.prior:
        z = sample(model.prior(), (n,), g)
        return save_panels(path, [("z ~ p(z)", tile(decoded(model, z), ncol))], f"{n} samples (seed {seed})")
    d = train_codes.shape[1]
    z_std = torch.randn(n, d, generator=g, device=dev)
    fit = fitted_gaussian(train_codes.to(dev))
    z_fit = fit.loc + (fit.scale_tril @ torch.randn(n, d, 1, generator=g, device=dev)).squeeze(-1)
    return save_panels(
        path,
        [
            ("z ~ N(0, I)", tile(decoded(model, z_std), ncol)),
            ("z ~ Gaussian fitted to training codes", tile(decoded(model, z_fit), ncol)),
        ],
        "an autoencoder has no prior: neither grid is a model sample",
    )


def reconstructions_figure(
    model: nn.Module,
    data: Prepared,
    path: str | os.PathLike,
    n: int = 32,
    noise: tuple[str, float] | None = None,
    seed: int = 0,
) -> Path:
    """Test images (as the model sees them) beside the decoded means of their posterior means; with `noise`
    (e.g. ("masking", 0.5)) the encoder sees a corrupted copy, shown between input and reconstruction.

    Args:
        model: a model that encodes and decodes one latent layer.
        data: the prepared test split (its first n images are shown).
        path: the PNG to write.
        n: how many images.
        noise: the encoder's input corruption (kind, level), or None.
        seed: the seed of the noise.
    """
    from vaelab.objectives.noise import corrupt

    x = data.batch(slice(0, n))
    seen = x
    if noise is not None:
        seen = corrupt(x, *noise, torch.Generator(device=x.device).manual_seed(seed))
    with torch.inference_mode():
        rec = decoded(model, model.encode(seen).mean)
    ncol = math.ceil(math.sqrt(len(x)))
    panels = [("input", tile(x, ncol))]
    if noise is not None:
        panels.append((f"{noise[0]} noise {noise[1]:g} (encoder input)", tile(seen, ncol)))
    return save_panels(path, [*panels, ("reconstruction", tile(rec, ncol))], f"{data.name}")


def manifold_plane(
    model: nn.Module, data: Prepared, dims: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """(centre [D], axes [2, D], scales [2], description) of the plane the manifold is drawn on: the plane of
    `dims` (or z itself when D = 2), at unit scale for a model with a prior and at the codes' spread without
    one; else the top two principal directions of the test codes.

    Args:
        model: a model that encodes and decodes one latent layer.
        data: the prepared test split (its codes place the plane).
        dims: two latent dimensions to span the plane, or None.
    """
    dev = _device(model)
    d = latent_dim(model, data)
    generative = capabilities(model).prior
    z = None if (generative and d == 2 and dims is None) else codes(model, data, limit=5000)
    if d == 2 and dims is None:
        dims = (0, 1)
    if dims is not None:
        if max(dims) >= d or min(dims) < 0 or dims[0] == dims[1]:
            raise ValueError(f"dims {dims} are not two distinct dimensions of a {d}-d latent space")
        centre = torch.zeros(d, device=dev) if generative else z.mean(0)
        axes = torch.zeros(2, d, device=dev)
        axes[0, dims[0]] = axes[1, dims[1]] = 1.0
        scales = torch.ones(2, device=dev) if generative else z[:, list(dims)].std(0)
        what = f"z[{dims[0]}], z[{dims[1]}] at Gaussian quantiles" + (
            "" if generative else " of the codes' spread"
        )
        return centre, axes, scales, what
    centre = z.mean(0)
    _, s, v = torch.linalg.svd(z - centre, full_matrices=False)
    scales = s[:2] / math.sqrt(max(len(z) - 1, 1))
    return centre, v[:2], scales, "top two principal directions of the test codes, at Gaussian quantiles"


def manifold_figure(
    model: nn.Module,
    data: Prepared,
    path: str | os.PathLike,
    n: int = 20,
    dims: tuple[int, int] | None = None,
) -> Path:
    """Decode an n x n grid of z at Gaussian quantiles of a latent plane (Kingma & Welling 2014, fig. 4).

    Args:
        model: a model that encodes and decodes one latent layer.
        data: the prepared test split (see `manifold_plane`).
        path: the PNG to write.
        n: the grid's side.
        dims: two latent dimensions to span the plane, or None (see `manifold_plane`).
    """
    centre, axes, scales, what = manifold_plane(model, data, dims)
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.5 / n, 1 - 0.5 / n, n)).to(centre.device)
    u, v = torch.meshgrid(q, q.flip(0), indexing="xy")  # rows top to bottom: second axis decreasing
    z = centre + u.reshape(-1, 1) * scales[0] * axes[0] + v.reshape(-1, 1) * scales[1] * axes[1]
    img = tile(decoded(model, z), n, pad=0)
    return save_panels(path, [(what, img)], "latent manifold", inches=7)


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of z0 and z1 at fractions t [T] -> [B, T, D] (linear where the two
    are nearly parallel).

    Args:
        z0: start points [B, D].
        z1: end points [B, D].
        t: fractions of the way, [T] in [0, 1].
    """
    a = torch.nn.functional.normalize(z0, dim=-1)
    b = torch.nn.functional.normalize(z1, dim=-1)
    omega = torch.acos((a * b).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7))[:, None, None]
    t = t[None, :, None]
    so = torch.sin(omega)
    lin = (1 - t) * z0[:, None] + t * z1[:, None]
    sph = (torch.sin((1 - t) * omega) * z0[:, None] + torch.sin(t * omega) * z1[:, None]) / so
    return torch.where(so.abs() < 1e-4, lin, sph)


def interpolations_figure(
    model: nn.Module, data: Prepared, path: str | os.PathLike, pairs: int = 6, steps: int = 10, seed: int = 0
) -> Path:
    """Linear and spherical paths between the posterior means of random pairs of test images.

    Args:
        model: a model that encodes and decodes one latent layer.
        data: the prepared test split.
        path: the PNG to write.
        pairs: how many pairs of images.
        steps: points on each path.
        seed: the seed that picks the pairs.
    """
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[: 2 * pairs]
    x = data.batch(idx.to(data.images.device))
    with torch.inference_mode():
        z = model.encode(x).mean
    z0, z1 = z[:pairs], z[pairs:]
    t = torch.linspace(0, 1, steps, device=z.device)
    lin = (1 - t[None, :, None]) * z0[:, None] + t[None, :, None] * z1[:, None]
    sph = slerp(z0, z1, t)
    d = z.shape[-1]
    return save_panels(
        path,
        [
            ("linear", tile(decoded(model, lin.reshape(-1, d)), steps)),
            ("spherical", tile(decoded(model, sph.reshape(-1, d)), steps)),
        ],
        f"interpolations between {pairs} pairs of test images",
    )


def latents_figure(model: nn.Module, data: Prepared, path: str | os.PathLike, limit: int = 5000) -> Path:
    """Test-set posterior means coloured by label (the top two principal components when D > 2).

    Args:
        model: a model that encodes.
        data: the prepared test split.
        path: the PNG to write.
        limit: at most this many images.
    """
    z = codes(model, data, limit=limit).float().cpu()
    labels = data.labels_at(slice(0, len(z)))
    if z.shape[1] > 2:
        centred = z - z.mean(0)
        _, s, v = torch.linalg.svd(centred, full_matrices=False)
        xy = centred @ v[:2].T
        share = (s[:2] ** 2 / (s**2).sum()).tolist()
        names = (f"PC1 ({share[0]:.0%} of variance)", f"PC2 ({share[1]:.0%})")
    elif z.shape[1] == 2:
        xy, names = z, ("z[0]", "z[1]")
    else:
        xy = torch.cat([z, torch.zeros_like(z)], 1)
        names = ("z[0]", "")
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.6)
    else:
        lab = labels.cpu().numpy()
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=lab, cmap="tab10", s=3, alpha=0.7, vmin=-0.5, vmax=9.5)
        fig.colorbar(sc, ax=ax, ticks=np.unique(lab)[:10], label="label")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(f"posterior means of {len(z)} {data.name} images")
    return save_figure(fig, path)


def curves_figure(history: list[dict], path: str | os.PathLike) -> Path:
    """Per-epoch ELBO, reconstruction and KL for train / valid / test.

    Args:
        history: metrics.jsonl's records, one per epoch.
        path: the PNG to write.
    """
    stats = [s for s in ("elbo", "rec", "kl") if any(f"train_{s}" in r for r in history)]
    titles = {"elbo": "ELBO (nats)", "rec": "E_q log p(x|z) (nats)", "kl": "KL(q || p) (nats)"}
    fig, axes = plt.subplots(1, max(len(stats), 1), figsize=(4.5 * max(len(stats), 1), 3.6), squeeze=False)
    for ax, s in zip(axes[0], stats):
        for split, style in (("train", "-"), ("valid", "--"), ("test", ":")):
            pts = [(r["epoch"], r[f"{split}_{s}"]) for r in history if f"{split}_{s}" in r]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", ms=2, label=split)
        ax.set_title(titles[s], fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def applicable(model: object) -> dict[str, bool]:
    """Which figures a model can draw: latent pictures need encode and decode of one latent layer (not
    taking a label); samples need a way to sample (a sampler, or a decoder).

    Args:
        model: the run's model.
    """
    caps = capabilities(model)
    latent = caps.latent_figures
    return {
        "samples": caps.sampler or caps.decode,
        "reconstructions": latent,
        "manifold": latent,
        "interpolations": latent,
        "latents": latent,
    }
