"""The one picture rule (vaelab.data.pictures) that folder: data sets and the explorer's uploads share:
transparency onto white, and a pixel budget read from the header that answers before Pillow's own guard."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from vaelab.config import DataConfig
from vaelab.data import load_data
from vaelab.data.folder import MAX_PIXELS, load_folder, read_image
from vaelab.data.pictures import OtherFormat, OverPixelLimit, UnreadableImage, read_picture
from vaelab.errors import DataError
from vaelab.serve.uploads import read_image as read_upload


def header_only_png(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims width x height grey pixels (no image data to speak
    of: a reader that decodes before checking the size fails, one that checks the header does not)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def transparent_png() -> bytes:
    """8x8 RGBA: fully transparent black, an opaque red square, a half-transparent black column."""
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 2:6] = (200, 30, 30, 255)
    rgba[:, 7] = (0, 0, 0, 128)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


# What transparent_png() is on a white page, in grey: white, the luma of red, half-way to black.
GREY_ON_WHITE = np.full((8, 8), 255, np.uint8)
GREY_ON_WHITE[2:6, 2:6] = 81  # round(0.299 * 200 + 0.587 * 30 + 0.114 * 30)
GREY_ON_WHITE[:, 7] = 127  # 255 * (1 - 128 / 255)


@pytest.mark.parametrize("channels", [1, 3])
def test_a_transparent_png_gives_the_same_pixels_to_training_and_to_the_explorer(tmp_path, channels):
    (tmp_path / "t.png").write_bytes(transparent_png())
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "other.png")
    splits = load_folder(tmp_path, image_size=8, channels=channels)
    every = np.concatenate([splits.train.images.numpy(), splits.test.images.numpy()])
    trained = next(a for a in every if a.max() > 0)  # the transparent picture, as training sees it
    uploaded = read_upload(transparent_png(), "image/png", (channels, 8, 8), False, 10_000)[0].numpy()
    np.testing.assert_array_equal(trained, uploaded)
    if channels == 1:
        np.testing.assert_array_equal(trained[0], GREY_ON_WHITE)
    else:
        assert (trained[:, 0, 0] == 255).all() and trained[:, 3, 3].tolist() == [200, 30, 30]


def test_transparency_of_palette_and_grey_pictures_is_on_white_too(tmp_path):
    p = Image.new("P", (8, 8), 0)
    p.putpalette([0, 0, 0, 255, 255, 255])
    p.info["transparency"] = 0  # palette entry 0 (black) is transparent
    p.save(tmp_path / "p.gif", transparency=0)
    la = np.zeros((8, 8, 2), np.uint8)  # black, fully transparent
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "p.gif", 8, 1).min() == 255
    assert read_image(tmp_path / "la.png", 8, 1).min() == 255


@pytest.mark.parametrize("side", [10_000, 20_000])  # 100 and 400 megapixels: Pillow warns, then refuses
def test_the_folder_loader_names_a_picture_over_the_pixel_limit(tmp_path, side):
    (tmp_path / "big.png").write_bytes(header_only_png(side, side))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(DataError) as e:
        read_image(tmp_path / "big.png", 8, 1)
    assert (
        str(e.value)
        == f"{tmp_path / 'big.png'}: {side}x{side} pixels is over the limit of {MAX_PIXELS} pixels"
    )
    with pytest.raises(DataError, match=rf"big\.png: {side}x{side} pixels is over the limit"):
        load_folder(tmp_path, 8)


def test_read_picture_says_what_went_wrong_by_its_type(tmp_path):
    with pytest.raises(OverPixelLimit) as big:
        read_picture(header_only_png(20_000, 20_000), 1, 8, 8, 1_000)
    assert big.value.size == (20_000, 20_000) and big.value.limit == 1_000
    gif = io.BytesIO()
    Image.new("L", (4, 4)).save(gif, format="GIF")
    with pytest.raises(OtherFormat, match="the file is GIF"):
        read_picture(gif.getvalue(), 1, 8, 8, 1_000, formats=("PNG",))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UnreadableImage, match="empty file, 0 bytes") as empty:
        read_picture(tmp_path / "empty.png", 1, 8, 8, 1_000)
    assert not empty.value.opened


def test_a_non_square_target_keeps_the_centre(tmp_path):
    arr = np.zeros((20, 20), np.uint8)
    arr[:, 5:15] = 255  # a white band 10 wide in the middle
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    out = read_picture(buf.getvalue(), 1, 20, 10, 1_000)
    assert out.shape == (1, 20, 10) and out.min() == 255


def test_folder_images_of_an_rgba_folder_train_on_white(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(transparent_png())
    d = load_data(DataConfig(name=f"folder:{tmp_path}", image_size=8, valid_fraction=0.0))
    np.testing.assert_array_equal(d.train.images[0, 0].numpy(), GREY_ON_WHITE)
