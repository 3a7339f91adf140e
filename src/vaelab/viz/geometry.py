"""Latent geometry the figures and the explorer share: principal directions of codes, and spherical
interpolation (slerp, as in Shoemake 1985, used for VAE latents by White 2016)."""

from __future__ import annotations

import math

import torch


def principal(z: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(centre [D], directions [k', D], spreads [k'], shares [k']) of the top k' <= k principal directions of
    z [N, D] along which the points spread at all (N points span at most N - 1): their standard deviations and
    shares of the total variance.

    Args:
        z: points [N, D].
        k: at most this many directions.
    """
    d = z.shape[1]
    centre = z.mean(0) if len(z) else z.new_zeros(d)
    if len(z) < 2:
        return centre, z.new_zeros(0, d), z.new_zeros(0), z.new_zeros(0)
    _, s, v = torch.linalg.svd(z - centre, full_matrices=False)
    keep = int((s > max(float(s[0]) * 1e-5, 1e-12)).sum().clamp(max=k))
    total = float((s**2).sum())
    return centre, v[:keep], s[:keep] / math.sqrt(len(z) - 1), s[:keep] ** 2 / max(total, 1e-30)


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


# The prior does not cover the codes when their mean is this many prior sds from its centre, or their spread
# is under this share of the prior's along an axis of the manifold's plane.
OFF_CENTRE_SDS = 2.0
NARROW_SHARE = 0.25


def prior_coverage(z: torch.Tensor) -> str:
    """ "" when codes z [N, k] (coordinates on the manifold's plane, prior N(0, I)) fill the prior's bulk; else
    one phrase saying how they do not: their mean more than `OFF_CENTRE_SDS` prior sds from 0, or their sd
    under `NARROW_SHARE` of the prior's along some axis.

    Args:
        z: the test codes on the plane's axes, in prior sds.
    """
    if len(z) < 2:
        return ""
    mean, sd = z.mean(0), z.std(0)
    far = float(mean.norm()) > OFF_CENTRE_SDS
    narrow = bool((sd < NARROW_SHARE).any())
    if not (far or narrow):
        return ""
    at = ", ".join(f"{float(m):.2f}" for m in mean)
    sds = ", ".join(f"{float(s):.2f}" for s in sd)
    return f"the test codes (mean {at}; sd {sds}) do not cover the prior"


def manifold_smoothness(tiles: torch.Tensor, n: int) -> float:
    """How smooth a decoded grid is: the mean squared difference of neighbouring tiles (right and down) over
    that of all pairs of tiles. A smooth manifold (faces turning by degrees) is well under 1; tiles that are
    noise, or unrelated to their neighbours, score about 1 (neighbours differ like random pairs); 0 for a
    constant grid.

    Args:
        tiles: the decoded grid, row by row, [n * rows, ...] (rows = len(tiles) // n; one row for a strip).
        n: tiles per row.
    """
    flat = tiles.detach().double().reshape(len(tiles), -1)
    rows = len(flat) // n
    grid = flat[: rows * n].reshape(rows, n, -1)
    near = [((grid[:, 1:] - grid[:, :-1]) ** 2).sum(-1).flatten()]
    if rows > 1:
        near.append(((grid[1:] - grid[:-1]) ** 2).sum(-1).flatten())
    neighbours = torch.cat(near).mean()
    # mean over all pairs i != j of |a_i - a_j|^2 = 2 N / (N - 1) * (total variance)
    m = len(flat)
    pairs = 2 * m / max(m - 1, 1) * ((flat - flat.mean(0)) ** 2).sum(-1).mean()
    return 0.0 if float(pairs) == 0 else float(neighbours / pairs)
