"""One picture as a model sees it: the one rule `folder:` data sets and the explorer's uploads both follow.

Both call `read_picture`, so at test time a model is shown exactly what it trained on:

- the header is checked against a pixel budget before anything is decoded; a picture over it is an
  `OverPixelLimit` naming its size, whatever its size (Pillow's decompression-bomb guard never answers first);
- EXIF orientation is applied; 16- and 32-bit integer greys are scaled to 8 bits (not clipped);
- transparency is composited onto white. A transparent pixel shows the page behind it, and a browser's or
  a document's page is white, so the model learns the picture a person sees; and dark line art, text or
  logos on a transparent background (what transparent PNGs usually hold) stay visible, where on black they
  would vanish. (Dropping alpha, as Pillow's plain conversion does, keeps whatever colour the transparent
  pixels happen to store: usually black, sometimes anything.);
- grey (ITU-R 601 luma) or RGB;
- the centre is cropped to the target's aspect ratio (whole-pixel offsets) and resized bilinearly.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    UnidentifiedImageError,
    features,
)

from vaelab.errors import DataError

# The formats a folder: data set reads, by content (a .png holding a JPEG is read as the JPEG it is).
READ_FORMATS = ("PNG", "JPEG", "GIF", "BMP", *(("WEBP",) if features.check("webp") else ()))
# Largest value of each integer mode wider than 8 bits (16-bit PNGs open as I;16); it maps to 255.
_WIDE_MAX = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 2**31 - 1}
# Header readers that skip Pillow's decompression-bomb check (used only to name the size of a picture
# that check refused).
_HEADERS = (
    PngImagePlugin.PngImageFile,
    JpegImagePlugin.JpegImageFile,
    GifImagePlugin.GifImageFile,
    BmpImagePlugin.BmpImageFile,
)


class OverPixelLimit(DataError):
    """A picture whose header claims more pixels than allowed (nothing of it was decoded)."""

    def __init__(self, size: tuple[int, int] | None, limit: int):
        self.size = size
        self.limit = limit
        what = f"{size[0]}x{size[1]} pixels" if size else "its size"
        super().__init__(f"{what} is over the limit of {limit} pixels")


class UnreadableImage(DataError):
    """Not a picture that can be read: `opened` says whether its header was (the failure came decoding)."""

    def __init__(self, reason: str, opened: bool):
        self.opened = opened
        super().__init__(" ".join(reason.split()))


class OtherFormat(DataError):
    """A readable picture of a format that was not asked for (e.g. a GIF uploaded as a PNG)."""

    def __init__(self, fmt: str):
        self.format = fmt
        super().__init__(f"the file is {fmt}")


def to_8bit(im: Image.Image) -> Image.Image:
    """Scale a 16- or 32-bit integer image to 0..255 (value * 255 / mode maximum, rounded), as mode L.

    Pillow's own conversion to L clips instead, turning most of a 16-bit image white.

    Args:
        im: the picture (returned as it is unless its mode is a wide integer one).
    """
    top = _WIDE_MAX.get(im.mode)
    if top is None:
        return im
    out = im.convert("I").point(lambda v: v * (255 / top) + 0.5).convert("L")
    out.info.pop("transparency", None)  # a 16-bit transparent level means nothing at 8 bits
    return out


def flatten_alpha(im: Image.Image) -> Image.Image:
    """Transparent pixels composited onto white (see the module's docstring for why white), as RGB.

    Args:
        im: the picture (returned as it is when it has no transparency).
    """
    if not im.has_transparency_data:
        return im
    rgba = im.convert("RGBA")
    page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(page, rgba).convert("RGB")


def centre_box(width: int, height: int, aspect_w: int, aspect_h: int) -> tuple[int, int, int, int]:
    """The largest centred box of a width x height picture with the aspect ratio aspect_w : aspect_h.

    Args:
        width: the picture's width.
        height: the picture's height.
        aspect_w: the target's width.
        aspect_h: the target's height.
    """
    if width * aspect_h > height * aspect_w:  # too wide: keep the height
        w = max(1, round(height * aspect_w / aspect_h))
        left = (width - w) // 2
        return left, 0, left + w, height
    h = max(1, round(width * aspect_h / aspect_w))
    top = (height - h) // 2
    return 0, top, width, top + h


def _header_size(fp: BinaryIO) -> tuple[int, int] | None:
    for reader in _HEADERS:
        try:
            fp.seek(0)
            return reader(fp).size
        except Exception:  # a probe: any reader's failure just means "not this format"
            continue
    return None


def _pixels(im: Image.Image, channels: int, height: int, width: int) -> np.ndarray:
    mode = "L" if channels == 1 else "RGB"
    im.draft(mode, (width, height))  # JPEG: decode at a reduced scale, much faster for big photos
    im = ImageOps.exif_transpose(im)  # camera orientation, e.g. portrait JPEGs
    im = flatten_alpha(to_8bit(im)).convert(mode)
    im = im.crop(centre_box(im.width, im.height, width, height)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None].copy() if channels == 1 else arr.transpose(2, 0, 1).copy()


def _read(fp: BinaryIO, channels: int, height: int, width: int, max_pixels: int, formats: tuple[str, ...]):
    with warnings.catch_warnings():
        # the budget is checked below, below Pillow's own: its warning is not the answer
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # a corrupt EXIF block only loses the orientation, not the picture: no path-less warnings
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
        try:
            im = Image.open(fp)
        except Image.DecompressionBombError:
            bomb = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            raise OverPixelLimit(_header_size(fp), min(max_pixels, bomb) if bomb else max_pixels) from None
        except UnidentifiedImageError:
            raise UnreadableImage(f"not a {', '.join(formats)} file", opened=False) from None
        except (OSError, SyntaxError, ValueError) as e:
            raise UnreadableImage(str(e), opened=False) from None
        with im:
            fmt = (
                "JPEG" if im.format == "MPO" else im.format
            )  # a phone's multi-picture JPEG: its first picture
            if fmt not in formats:
                raise OtherFormat(str(fmt))
            if im.width * im.height > max_pixels:
                raise OverPixelLimit(im.size, max_pixels)
            try:
                return _pixels(im, channels, height, width)
            except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
                raise UnreadableImage(str(e) or type(e).__name__, opened=True) from None


def read_picture(
    source: str | os.PathLike | bytes,
    channels: int,
    height: int,
    width: int,
    max_pixels: int,
    formats: tuple[str, ...] = READ_FORMATS,
) -> np.ndarray:
    """A picture as uint8 [C, height, width], converted by the one rule (module docstring).

    Raises OverPixelLimit (checked from the header before decoding), OtherFormat (a format not in
    `formats`) or UnreadableImage (empty, not an image, or damaged).

    Args:
        source: a file's path, or its bytes.
        channels: 1 (grey) or 3 (RGB).
        height: the target's height.
        width: the target's width.
        max_pixels: the largest width x height read.
        formats: Pillow's names of the formats accepted (a multi-picture JPEG, MPO, counts as JPEG).
    """
    if isinstance(source, bytes):
        if not source:
            raise UnreadableImage("empty file, 0 bytes", opened=False)
        return _read(io.BytesIO(source), channels, height, width, max_pixels, formats)
    try:
        with open(Path(source), "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise UnreadableImage("empty file, 0 bytes", opened=False)
            return _read(f, channels, height, width, max_pixels, formats)
    except OSError as e:
        raise UnreadableImage(e.strerror or str(e), opened=False) from None
