"""What a model learned, as pictures: samples, reconstructions, the latent manifold, interpolations, latents.

Only the public protocol is used (`encode`, `decode`, `prior`, and `generate(n, generator)` for models that
sample without a single latent layer), and `capabilities(model)` says which of these a model has, so every
model draws what applies to it (`applicable`). The manifold follows Kingma & Welling (2014, figure 4): a grid
of z at Gaussian quantiles, decoded.

Every figure works with the split it is given, however small: fewer pairs, fewer rows, a strip instead of a
plane for a 1-d latent space; what cannot be drawn at all (interpolations of one image) raises `NotDrawn`
with one line saying why. A model with a prior has a posterior, whose means are drawn; a model without one
(an autoencoder) has codes f(x), and the figures say "codes".
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
from vaelab.viz.curves import curves_figure as curves_figure  # re-exported: every figure from one module
from vaelab.viz.geometry import principal, slerp  # slerp: also the explorer's (vaelab.serve)
from vaelab.viz.grids import GRID_SIDE, NotDrawn, capped, plt, save_figure, save_panels, tile
from vaelab.viz.labelled import samples_by_label_figure
from vaelab.viz.trust import manifold_notes


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
    """The encoder's means E_q[z|x], `[N, D]` (an autoencoder's codes f(x)), over (the first `limit` images of) a
    split; `[0, D]` for an empty split.

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
    if not out:
        return torch.zeros(0, capabilities(model).latent_dim or 0, device=_device(model))
    z = torch.cat(out)
    return z if limit is None else z[:limit]


def code_name(model: object) -> str:
    """What the encoder's output is called: "posterior means" for a model with a prior (so a posterior),
    "codes" for one without (an autoencoder's f(x)).

    Args:
        model: a model that encodes.
    """
    return "posterior means" if capabilities(model).prior else "codes"


def _images(n: int) -> str:
    return f"{n} image" + ("" if n == 1 else "s")


def samples_figure(
    model: nn.Module,
    path: str | os.PathLike,
    n: int = 64,
    seed: int = 0,
    train_codes: torch.Tensor | None = None,
) -> Path:
    """A grid of model samples: `generate(n, generator)` when the model has it (ancestral samplers), else
    decoded prior draws; for a model without a prior (an autoencoder), two grids that show why. A model whose
    generator takes a label (`num_classes`) gets one row of samples per label. A grid holds at most
    `GRID_SIDE` squared samples (a note says so when n is more).

    Args:
        model: a model that samples or decodes (`applicable(model)["samples"]`).
        path: the PNG to write.
        n: how many samples (per label: n / num_classes, rounded up).
        seed: the seed of the draws.
        train_codes: codes of training images [N, D], for a model without a prior or sampler (the Gaussian
            fitted to them is the second grid).
    """
    from vaelab.models.autoencoder import fitted_gaussian

    caps = capabilities(model)
    if caps.labelled:
        per_label = capped(math.ceil(n / caps.num_classes), GRID_SIDE, "samples per label", path)
        return samples_by_label_figure(model, path, per_label=per_label, seed=seed)

    asked, n = n, capped(n, GRID_SIDE**2, "samples", path)
    title = (
        f"{n} samples (seed {seed})" if n == asked else f"{n:,} of the {asked:,} samples asked (seed {seed})"
    )
    dev = _device(model)
    g = torch.Generator(device=dev).manual_seed(seed)
    ncol = math.ceil(math.sqrt(n))
    if caps.sampler:
        with torch.inference_mode():
            images = model.generate(n, g)
        return save_panels(path, [("samples", tile(images, ncol))], title)
    if caps.prior:
        z = sample(model.prior(), (n,), g)
        return save_panels(path, [("z ~ p(z)", tile(decoded(model, z), ncol))], title)
    if train_codes is None or len(train_codes) == 0:
        raise NotDrawn(f"{type(model).__name__} has no prior: its samples need the codes of training images")
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
    """Test images (as the model sees them) beside the decoded means of their posterior means (an
    autoencoder: of their codes); with `noise` (e.g. ("masking", 0.5)) the encoder sees a corrupted copy,
    shown between input and reconstruction.

    Args:
        model: a model that encodes and decodes one latent layer.
        data: the prepared test split (its first n images are shown, as many as it has).
        path: the PNG to write.
        n: how many images.
        noise: the encoder's input corruption (kind, level), or None.
        seed: the seed of the noise.
    """
    from vaelab.objectives.noise import corrupt

    if len(data) == 0:
        raise NotDrawn(f"reconstructions need a test image, and {data.name or 'the split'} has none")
    n = capped(min(n, len(data)), GRID_SIDE**2, "reconstructions", path)
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
    return save_panels(
        path, [*panels, ("reconstruction", tile(rec, ncol))], f"{data.name}: {_images(len(x))}"
    )


GRID_RANGES = ("prior", "codes")  # what a manifold's quantiles are of: the prior's, or the test codes' spread


def manifold_plane(
    model: nn.Module, data: Prepared, dims: tuple[int, ...] | None = None, grid_range: str = "prior"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """(centre [D], axes [k, D], scales [k], description) of the plane (k = 2; a line, k = 1, when D = 1) the
    manifold is drawn on: the plane of `dims` (or z itself when D <= 2), at unit scale for a model with a
    prior and at the codes' spread without one; else the top two principal directions of the test codes (a
    model with a prior falls back to z[0], z[1] when the test codes span fewer than two directions).

    Args:
        model: a model that encodes and decodes one latent layer.
        data: the prepared test split (its codes place the plane).
        dims: two latent dimensions to span the plane, or None.
        grid_range: "prior": a model with a prior is drawn at unit scale about 0; "codes": at its test codes'
            mean and spread along the plane's axes (for codes that do not cover the prior).
    """
    if grid_range not in GRID_RANGES:
        raise ValueError(f"unknown manifold range '{grid_range}'; choose one of: {', '.join(GRID_RANGES)}")
    d = capabilities(model).latent_dim
    has_prior = capabilities(model).prior and grid_range == "prior"
    if dims is not None and (len(dims) != 2 or max(dims) >= d or min(dims) < 0 or dims[0] == dims[1]):
        raise ValueError(f"dims {dims} are not two distinct dimensions of a {d}-d latent space")
    z = None if (has_prior and (d <= 2 or dims is not None)) else codes(model, data, limit=5000)
    return plane_of_codes(model, z, dims, grid_range, data.name or "the split")


def plane_of_codes(
    model: nn.Module,
    z: torch.Tensor | None,
    dims: tuple[int, ...] | None = None,
    grid_range: str = "prior",
    where: str = "the split",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """`manifold_plane` from given test codes z [N, D] (None when the plane is z's own dims at the prior's
    scale): the one rule for unlabelled models and for labelled ones (`vaelab.viz.label_manifold`).

    Args:
        model: the model whose latent space is drawn.
        z: the test codes, or None.
        dims: two latent dimensions to span the plane, or None.
        grid_range: "prior" or "codes" (see `manifold_plane`).
        where: the split the codes came from, named in errors.
    """
    if grid_range not in GRID_RANGES:
        raise ValueError(f"unknown manifold range '{grid_range}'; choose one of: {', '.join(GRID_RANGES)}")
    dev = _device(model)
    d = capabilities(model).latent_dim
    has_prior = capabilities(model).prior and grid_range == "prior"
    if dims is not None and (len(dims) != 2 or max(dims) >= d or min(dims) < 0 or dims[0] == dims[1]):
        raise ValueError(f"dims {dims} are not two distinct dimensions of a {d}-d latent space")
    why = ""
    if dims is None and d > 2:
        centre, axes, scales, _ = principal(z)
        if len(axes) == 2:
            return (
                centre,
                axes,
                scales,
                "top two principal directions of the test codes, at Gaussian quantiles",
            )
        if not has_prior:
            raise NotDrawn(
                f"the manifold of {type(model).__name__} lies on its test codes' top two principal directions, "
                f"and {len(z)} test codes span {len(axes)} (need 3 test images that differ)"
            )
        why = f" ({len(z)} test codes span fewer than two directions)"
    dims = tuple(range(min(d, 2))) if dims is None else dims
    axes = torch.eye(d, device=dev)[list(dims)]
    if has_prior:
        centre, scales = torch.zeros(d, device=dev), torch.ones(len(dims), device=dev)
    else:
        if z is None or len(z) < 2:
            raise NotDrawn(
                f"the manifold of {type(model).__name__} spans its test codes' spread, "
                f"and {where} has {_images(0 if z is None else len(z))} (need 2)"
            )
        centre, scales = z.mean(0), z[:, list(dims)].std(0)
        if capabilities(model).prior:  # the other dimensions stay at the prior's centre
            centre = torch.zeros(d, device=dev).index_copy(
                0, torch.tensor(list(dims), device=dev), centre[list(dims)]
            )
    what = ", ".join(f"z[{i}]" for i in dims) + " at Gaussian quantiles"
    return centre, axes, scales, what + ("" if has_prior else " of the codes' spread") + why


def manifold_figure(
    model: nn.Module,
    data: Prepared,
    path: str | os.PathLike,
    n: int = 20,
    dims: tuple[int, int] | None = None,
    grid_range: str = "prior",
) -> Path:
    """Decode an n x n grid of z at Gaussian quantiles of a latent plane (Kingma & Welling 2014, fig. 4); a
    row of n for a 1-d latent space.

    The title says (`vaelab.viz.trust.manifold_notes`) when the test codes do not cover the prior the grid is
    drawn at (most of such a grid decodes points no image maps to; `grid_range="codes"` grids over the codes'
    own spread), when neighbouring tiles differ about as much as random pairs, and when the tiles are pixel
    noise, rougher than the test images.

    Args:
        model: a model that encodes and decodes one latent layer.
        data: the prepared test split (see `manifold_plane`).
        path: the PNG to write.
        n: the grid's side (at most `GRID_SIDE`).
        dims: two latent dimensions to span the plane, or None (see `manifold_plane`).
        grid_range: "prior" or "codes": the quantiles of the prior or of the test codes (see `manifold_plane`).
    """
    n = capped(n, GRID_SIDE, "pictures per side", path)
    centre, axes, scales, what = manifold_plane(model, data, dims, grid_range)
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.5 / n, 1 - 0.5 / n, n)).to(centre.device)
    if len(axes) == 1:
        z = centre + q.reshape(-1, 1) * scales[0] * axes[0]
    else:
        u, v = torch.meshgrid(q, q.flip(0), indexing="xy")  # rows top to bottom: second axis decreasing
        z = centre + u.reshape(-1, 1) * scales[0] * axes[0] + v.reshape(-1, 1) * scales[1] * axes[1]
    tiles = decoded(model, z)
    on_plane = None
    if capabilities(model).prior and grid_range == "prior":
        on_plane = (codes(model, data, limit=5000) - centre) @ axes.T / scales
    real = next((x for _, x in iterate(data, 500)), None)
    notes = manifold_notes(tiles, n, on_plane, real)
    title = "\n".join(["latent manifold", *notes])
    return save_panels(path, [(what, tile(tiles, n, pad=0))], title, inches=7)


def interpolations_figure(
    model: nn.Module, data: Prepared, path: str | os.PathLike, pairs: int = 6, steps: int = 10, seed: int = 0
) -> Path:
    """Linear and spherical paths between the posterior means (an autoencoder: the codes) of random pairs of
    test images: as many pairs as the split has, up to `pairs`.

    Args:
        model: a model that encodes and decodes one latent layer.
        data: the prepared test split (at least two images).
        path: the PNG to write.
        pairs: how many pairs of images (at most `GRID_SIDE`).
        steps: points on each path (at most `GRID_SIDE`).
        seed: the seed that picks the pairs.
    """
    if len(data) < 2:
        raise NotDrawn(
            f"interpolations need two test images, and {data.name or 'the split'} has {_images(len(data))}"
        )
    steps = capped(steps, GRID_SIDE, "steps", path)
    pairs = capped(min(pairs, len(data) // 2), GRID_SIDE, "pairs", path)
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
        f"interpolations between {pairs} pair{'s' if pairs > 1 else ''} of test images ({code_name(model)})",
    )


def _label_colours(labels: np.ndarray) -> dict:
    """scatter's colour arguments: one distinct colour per label (tab10 up to 10 labels, tab20 up to 20,
    else a continuous map), whatever the labels' number."""
    k = int(labels.max()) + 1 if len(labels) else 1
    cmap, top = ("tab10", 10) if k <= 10 else ("tab20", 20) if k <= 20 else ("viridis", k)
    return {"c": labels, "cmap": cmap, "vmin": -0.5, "vmax": top - 0.5}


def latents_figure(model: nn.Module, data: Prepared, path: str | os.PathLike, limit: int = 5000) -> Path:
    """Test-set posterior means (an autoencoder: codes) coloured by label: z itself when D <= 2, else the
    top two principal components (as many as the points span).

    Args:
        model: a model that encodes.
        data: the prepared test split.
        path: the PNG to write.
        limit: at most this many images.
    """
    z = codes(model, data, limit=limit).float().cpu()
    if len(z) == 0:
        raise NotDrawn(f"the latent scatter needs a test image, and {data.name or 'the split'} has none")
    labels = data.labels_at(slice(0, len(z)))
    if z.shape[1] > 2:
        centre, axes, _, share = principal(z)
        xy = torch.cat([(z - centre) @ axes.T, torch.zeros(len(z), 2 - len(axes))], 1)
        names = [
            f"PC{i + 1} ({s:.0%}{' of variance' if i == 0 else ''})" for i, s in enumerate(share.tolist())
        ]
        names += [f"PC{i + 1} (none: {len(z)} codes span {len(axes)})" for i in range(len(axes), 2)]
    elif z.shape[1] == 2:
        xy, names = z, ["z[0]", "z[1]"]
    else:
        xy, names = torch.cat([z, torch.zeros_like(z)], 1), ["z[0]", ""]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=3 if len(z) > 100 else 12, alpha=0.6)
    else:
        lab = labels.cpu().numpy()
        sc = ax.scatter(xy[:, 0], xy[:, 1], s=3 if len(z) > 100 else 12, alpha=0.7, **_label_colours(lab))
        present = np.unique(lab)
        fig.colorbar(sc, ax=ax, ticks=present if len(present) <= 20 else None, label="label")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(f"{code_name(model)} of {_images(len(z))} of {data.name}")
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
