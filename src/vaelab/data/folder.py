"""`folder:PATH`: any folder of PNG/JPEG images (e.g. CelebA), centre-cropped and resized with Pillow.

Images in class subfolders get the subfolder's index as label (ImageFolder's convention); a flat folder
has no labels. No split is published, so a fixed seeded 10% becomes the test split.
EXIF orientation is applied, 16-bit greys are scaled to 8 bits, and links are followed only within PATH.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vaelab.data.sources import Splits, seeded_split
from vaelab.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg")
# Refuse images whose header claims more pixels than this (a decompression bomb guard).
MAX_PIXELS = 64_000_000
# Largest value of each integer mode wider than 8 bits (16-bit PNGs open as I;16); it maps to 255.
_WIDE_MAX = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 2**31 - 1}


def list_images(root: Path) -> list[Path]:
    """Every PNG/JPEG below `root`, sorted, following links only where they resolve inside it.

    A linked folder seen before (a loop, or a second link to it) is not walked again; links that
    resolve outside `root` are refused, naming the first.

    Args:
        root: the image folder.
    """
    top = root.resolve()
    real_of = {str(root): top}  # each folder os.walk will visit -> where it really is
    seen = {top}
    files: list[Path] = []
    outside: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = real_of.pop(dirpath)
        kept = []
        for d in sorted(dirnames):
            link = os.path.join(dirpath, d)
            real = Path(os.path.realpath(link)) if os.path.islink(link) else here / d
            if not real.is_relative_to(top):
                outside.append(Path(link))
            elif real not in seen:
                seen.add(real)
                real_of[link] = real
                kept.append(d)
        dirnames[:] = kept
        for f in sorted(filenames):
            if f.lower().endswith(EXTENSIONS):
                path = Path(dirpath) / f
                if path.is_symlink() and not path.resolve().is_relative_to(top):
                    outside.append(path)
                else:
                    files.append(path)
    if outside:
        raise DataError(
            f"{root}: {len(outside)} link(s) lead outside the folder (first: {outside[0]} -> "
            f"{outside[0].resolve()}); links are followed only within it"
        )
    return files


def _to_8bit(im: Image.Image) -> Image.Image:
    """Scale a 16- or 32-bit integer image to 0..255 (value * 255 / mode maximum, rounded), as mode L.

    Pillow's own conversion to L clips instead, turning most of a 16-bit image white.
    """
    top = _WIDE_MAX.get(im.mode)
    if top is None:
        return im
    return im.convert("I").point(lambda v: v * (255 / top) + 0.5).convert("L")


def read_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as uint8 [C, size, size]: centre crop to a square, resize, grey or RGB.

    Args:
        path: a PNG or JPEG file.
        size: the side of the square it is resized to.
        channels: 1 (grey) or 3 (RGB).
    """
    mode = "L" if channels == 1 else "RGB"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # a corrupt EXIF block only loses the orientation, not the picture: no path-less warnings
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise DataError(
                        f"{path}: {im.width}x{im.height} pixels is over the limit of {MAX_PIXELS}"
                    )
                im.draft(mode, (size, size))  # JPEG: decode at a reduced scale, much faster for big photos
                ImageOps.exif_transpose(im, in_place=True)  # camera orientation, e.g. portrait JPEGs
                im = _to_8bit(im).convert(mode)
                side = min(im.size)
                left, top = (im.width - side) // 2, (im.height - side) // 2
                im = im.crop((left, top, left + side, top + side)).resize(
                    (size, size), Image.Resampling.BILINEAR
                )
                arr = np.asarray(im, dtype=np.uint8)
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,  # Pillow's "broken PNG file"
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def load_folder(path: str | os.PathLike, image_size: int = 64, channels: int = 1) -> Splits:
    """Read a folder of images into memory as uint8 [N, C, S, S] with a fixed 90/10 split.

    Args:
        path: the folder (class subfolders give labels).
        image_size: S, the side every image is resized to.
        channels: 1 (grey) or 3 (RGB).
    """
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
