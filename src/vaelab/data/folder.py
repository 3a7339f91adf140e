"""`folder:PATH`: any folder of PNG/JPEG images (e.g. CelebA), centre-cropped and resized with Pillow.

Images in class subfolders get the subfolder's index as label (ImageFolder's convention); a flat folder
has no labels. No split is published, so a fixed seeded 10% becomes the test split.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vaelab.data.sources import Splits, seeded_split
from vaelab.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg")
# Refuse images whose header claims more pixels than this (a decompression bomb guard).
MAX_PIXELS = 64_000_000


def list_images(root: Path) -> list[Path]:
    """Every PNG/JPEG below `root`, sorted, following no links out of it."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        files += [Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(EXTENSIONS)]
    return files


def read_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as uint8 [C, size, size]: centre crop to a square, resize, grey or RGB."""
    mode = "L" if channels == 1 else "RGB"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise DataError(
                        f"{path}: {im.width}x{im.height} pixels is over the limit of {MAX_PIXELS}"
                    )
                im.draft(mode, (size, size))  # JPEG: decode at a reduced scale, much faster for big photos
                im = im.convert(mode)
                side = min(im.size)
                left, top = (im.width - side) // 2, (im.height - side) // 2
                im = im.crop((left, top, left + side, top + side)).resize(
                    (size, size), Image.Resampling.BILINEAR
                )
                arr = np.asarray(im, dtype=np.uint8)
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def load_folder(path: str | os.PathLike, image_size: int = 64, channels: int = 1) -> Splits:
    """Read a folder of images into memory as uint8 [N, C, S, S] with a fixed 90/10 split."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    files = list_images(root)
    if len(files) < 2:
        raise DataError(f"{root}: found {len(files)} PNG/JPEG images, need at least 2")
    images = torch.from_numpy(np.stack([read_image(f, image_size, channels) for f in files]))
    classes = sorted({f.parent for f in files})
    labels = None
    if len(classes) > 1:
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index[f.parent] for f in files], dtype=torch.int64)
    n_test = max(1, len(files) // 10)
    return seeded_split(images, labels, n_test, f"folder:{root.name}")
