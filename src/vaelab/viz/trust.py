"""Whether a decoded latent manifold can be trusted, as numbers and one-line notes for its figure: test codes
that do not cover the prior the grid is drawn at (`prior_coverage`), neighbouring tiles that differ like
random pairs (`manifold_smoothness`), tiles that are pixel noise (`speckle`). Kingma & Welling 2014's Frey
Face manifold (fig. 4a) passes all three; a decoder gridded far from its codes draws speckle."""

from __future__ import annotations

import torch

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


def speckle(tiles: torch.Tensor, images: torch.Tensor) -> float:
    """How much rougher decoded tiles are than real images: the mean squared difference of neighbouring pixels
    (down and across) in the tiles over that in the images. A decoder that draws faces scores about 1 or
    less (means are smoother than data); pixel noise far from any image's code scores several times that.

    Args:
        tiles: decoded pictures [N, C, H, W].
        images: real pictures of the same shape [M, C, H, W] (e.g. the test split).
    """

    def rough(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().double()
        return (((t[..., 1:, :] - t[..., :-1, :]) ** 2).mean() + ((t[..., 1:] - t[..., :-1]) ** 2).mean()) / 2

    ref = float(rough(images))
    return float("inf") if ref == 0 else float(rough(tiles)) / ref


NOISY = 0.5  # a manifold whose `manifold_smoothness` is above this is flagged on its figure
SPECKLED = 2.0  # ... and one whose tiles' `speckle` (pixel roughness over the test images') is above this


def manifold_notes(
    tiles: torch.Tensor, n: int, on_plane: torch.Tensor | None, images: torch.Tensor | None
) -> list[str]:
    """One line for each way a decoded grid cannot be trusted (none: an empty list).

    Args:
        tiles: the decoded grid, row by row [n * rows, C, H, W].
        n: tiles per row.
        on_plane: the test codes on the plane's axes in prior sds, when the grid is at the prior's quantiles;
            None: the grid is over the codes' own spread (nothing to check).
        images: some real test images [M, C, H, W], or None.
    """
    notes = []
    off = "" if on_plane is None else prior_coverage(on_plane)
    if off:
        notes.append(f"{off}: most tiles decode no image's code; --range codes grids over theirs")
    rough = manifold_smoothness(tiles, n)
    if rough > NOISY:
        notes.append(
            f"neighbouring tiles differ almost like random pairs (smoothness {rough:.2f}, 0 = smooth)"
        )
    grain = 0.0 if images is None or not len(images) else speckle(tiles, images)
    if grain > SPECKLED:
        notes.append(
            f"the tiles are speckle: pixel to pixel they change {grain:.1f} times as much as test images"
        )
    return notes
