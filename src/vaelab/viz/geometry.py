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
