"""folder:PATH sources: centre crop, resize, grey or RGB, labels from subfolders, bad files named."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.config import DataConfig
from vaelab.data import load_data
from vaelab.data.folder import list_images, load_folder, read_image
from vaelab.data.pictures import to_8bit
from vaelab.errors import DataError


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_centre_crop_and_resize(tmp_path):
    # a 40x20 (h x w) image whose centre 20x20 square is white, the rest black
    arr = np.zeros((40, 20), np.uint8)
    arr[10:30] = 255
    _save(tmp_path / "a.png", arr)
    out = read_image(tmp_path / "a.png", 10, 1)
    assert out.shape == (1, 10, 10) and out.min() == 255


def test_rgb_and_grey(tmp_path):
    arr = np.zeros((8, 8, 3), np.uint8)
    arr[..., 0] = 255  # pure red
    _save(tmp_path / "r.jpg", arr)
    rgb = read_image(tmp_path / "r.jpg", 8, 3)
    grey = read_image(tmp_path / "r.jpg", 8, 1)
    assert rgb.shape == (3, 8, 8) and rgb[0].mean() > 240 and rgb[1].mean() < 15
    assert grey.shape == (1, 8, 8) and abs(float(grey.mean()) - 0.299 * 255) < 6  # ITU-R 601 luma of red


def test_subfolders_become_labels(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        for i in range(10):
            _save(tmp_path / cls / f"{i}.png", rng.integers(0, 256, (12, 12), dtype=np.uint8))
    splits = load_folder(tmp_path, image_size=8, channels=1)
    assert len(splits.train) + len(splits.test) == 20 and len(splits.test) == 2
    assert sorted(splits.test.labels.tolist()) == [0, 1]  # stratified
    d = load_data(DataConfig(name=f"folder:{tmp_path}", image_size=8, valid_fraction=0.0))
    assert d.train.images.shape[1:] == (1, 8, 8)


def test_corrupt_image_is_named(tmp_path):
    _save(tmp_path / "ok.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"bad\.png: not a readable image"):
        load_folder(tmp_path, 8)


def test_broken_png_chunk_is_named(tmp_path):
    # a PNG cut 3 bytes into its image data, then junk where the next chunk should be: Pillow raises
    # SyntaxError while decoding
    _save(tmp_path / "ok.png", np.zeros((4, 4), np.uint16))
    good = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: good.index(b"IDAT") + 7] + b"\xff" * 40)
    with pytest.raises(DataError, match=r"cut\.png: not a readable image \(broken PNG file"):
        read_image(tmp_path / "cut.png", 8, 1)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(
        DataError, match=r"found 0 readable images \(PNG, JPEG, GIF, BMP, WebP\), need at least 2"
    ):
        load_folder(tmp_path, 8)
    with pytest.raises(DataError, match="image folder not found"):
        load_folder(tmp_path / "nope", 8)
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"^folder:.*a\.png: not a folder$"):
        load_folder(tmp_path / "a.png", 8)


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_png_is_scaled_not_clipped(tmp_path, channels):
    # a 16-bit gradient over the whole range; each value v should become round(v * 255 / 65535)
    v = np.linspace(0, 65535, 256).round().astype(np.uint16).reshape(16, 16)
    _save(tmp_path / "g.png", v)
    assert Image.open(tmp_path / "g.png").mode == "I;16"
    out = read_image(tmp_path / "g.png", 16, channels)
    expected = np.round(v / 257).astype(np.uint8)  # 65535 / 255 == 257, and v / 257 never ends in .5
    assert out.shape == (channels, 16, 16)
    for c in range(channels):
        np.testing.assert_array_equal(out[c], expected)


def test_other_wide_integer_modes_are_scaled():
    big_endian = Image.frombytes("I;16B", (3, 1), np.array([0, 32896, 65535], ">u2").tobytes())
    int32 = Image.fromarray(np.array([[-5, 0, 2**30, 2**31 - 1]], np.int32))
    assert np.asarray(to_8bit(big_endian)).tolist() == [[0, 128, 255]]
    assert np.asarray(to_8bit(int32)).tolist() == [[0, 0, 128, 255]]


@pytest.mark.parametrize("ext", [".png", ".jpg"])
@pytest.mark.parametrize(
    "orientation, white",  # where the white half lands in the 16x16 centre square
    [(1, np.s_[:, 8:]), (3, np.s_[:, :8]), (6, np.s_[8:, :]), (8, np.s_[:8, :])],
)
def test_exif_orientation_is_applied(tmp_path, ext, orientation, white):
    # stored 16 high x 32 wide, left half black, right half white; 6 and 8 display it 32 high x 16 wide
    arr = np.zeros((16, 32), np.uint8)
    arr[:, 16:] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / f"o{ext}"
    Image.fromarray(arr).save(p, exif=exif, **({"quality": 95} if ext == ".jpg" else {}))
    out = read_image(p, 16, 1)[0]
    expected = np.zeros((16, 16), np.uint8)
    expected[white] = 255
    if ext == ".png":
        np.testing.assert_array_equal(out, expected)
    else:  # JPEG is lossy: the layout must match, values to within its ringing
        np.testing.assert_array_equal(out > 128, expected > 128)


def test_corrupt_exif_reads_upright_without_warnings(tmp_path):
    arr = np.zeros((16, 32), np.uint8)
    arr[:, 16:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "c.png", exif=exif.tobytes()[:20])  # cut inside the orientation tag
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = read_image(tmp_path / "c.png", 16, 1)[0]
    assert out[:, :8].max() == 0 and out[:, 8:].min() == 255


def _images(folder: Path, n: int, value: int = 0) -> None:
    for i in range(n):
        _save(folder / f"{i}.png", np.full((8, 8), value, np.uint8))


def test_links_inside_the_folder_are_followed_once(tmp_path):
    root = tmp_path / "data"
    _images(root / "cats", 3, 10)
    _images(root / "_store" / "birds", 2, 20)
    (root / "birds").symlink_to(root / "_store" / "birds", target_is_directory=True)
    (root / "cats" / "loop").symlink_to(root, target_is_directory=True)  # a loop back to the top
    (root / "cats" / "again.png").symlink_to(root / "_store" / "birds" / "0.png")
    files = list_images(root)
    assert sorted(str(f.relative_to(root)) for f in files) == [
        "birds/0.png",
        "birds/1.png",
        "cats/0.png",
        "cats/1.png",
        "cats/2.png",
        "cats/again.png",
    ]
    splits = load_folder(root, image_size=8)
    labels = torch.cat([splits.train.labels, splits.test.labels])
    images = torch.cat([splits.train.images, splits.test.images])
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 1, 1]  # birds (the link), cats
    assert sorted(images[:, 0, 0, 0].tolist()) == [10, 10, 10, 20, 20, 20]


def test_links_leading_outside_are_refused(tmp_path):
    root = tmp_path / "data"
    _images(root / "cats", 3)
    _images(tmp_path / "elsewhere" / "dogs", 2)
    (root / "dogs").symlink_to(tmp_path / "elsewhere" / "dogs", target_is_directory=True)
    (root / "cats" / "stray.png").symlink_to(tmp_path / "elsewhere" / "dogs" / "0.png")
    with pytest.raises(DataError, match=r"data: 2 link\(s\) lead outside the folder \(first: .*dogs -> "):
        load_folder(root, image_size=8)


def _noise(path: Path, seed: int, fmt: str | None = None) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return arr


def _every(splits) -> list[bytes]:
    return sorted(bytes(a.numpy()) for a in torch.cat([splits.train.images, splits.test.images]))


@pytest.mark.parametrize("name", ["folder:", "folder:  "])
def test_an_empty_folder_path_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch, name):
    _images(tmp_path, 5)  # PNGs in the current folder: an empty path must not train on them
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"^--data folder: has an empty path \(an unset shell variable\?\)"):
        load_data(DataConfig(name=name, image_size=8))


def test_a_relative_folder_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert DataConfig(name="folder:good").name == f"folder:{tmp_path / 'good'}"
    assert DataConfig(name="folder:~/pics").name == f"folder:{Path.home() / 'pics'}"
    assert DataConfig(data_dir="data").data_dir == str(tmp_path / "data")
    assert DataConfig(name="folder:").name == "folder:" and DataConfig(name="mnist").name == "mnist"


def test_data_dir_re_points_a_folder_that_moved(tmp_path, monkeypatch, capsys):
    want = sorted(bytes(_noise(tmp_path / "old" / "good" / f"{i}.png", i)) for i in range(4))
    cfg = DataConfig(name=f"folder:{tmp_path / 'old' / 'good'}", image_size=8, valid_fraction=0.0)
    (tmp_path / "new").mkdir()
    (tmp_path / "old" / "good").rename(tmp_path / "new" / "good")
    with pytest.raises(
        DataError, match=r"image folder not found: .*old/good; if it moved, pass --data-dir DIR"
    ):
        load_data(cfg)
    for data_dir in (tmp_path / "new", tmp_path / "new" / "good"):  # DIR/NAME, or DIR itself
        d = load_data(dataclasses.replace(cfg, data_dir=str(data_dir)))
        assert sorted(bytes(a.numpy()) for a in torch.cat([d.train.images, d.test.images])) == want
    err = capsys.readouterr().err
    assert (
        f"folder:{tmp_path / 'old' / 'good'}: reading the images in {tmp_path / 'new' / 'good'} (--data-dir)"
        in err
    )
    with pytest.raises(
        DataError, match=r"image folder not found: looked in .*nowhere/good, .*old/good, .*nowhere"
    ):
        load_data(dataclasses.replace(cfg, data_dir=str(tmp_path / "nowhere")))


def test_the_stored_folder_comes_before_data_dir_itself(tmp_path):
    # a --data-dir meant for named data sets (serve --data-dir) must not turn into the images of a folder run
    _images(tmp_path / "pics", 3, 10)
    _images(tmp_path / "datasets", 3, 99)
    d = load_data(
        DataConfig(
            name=f"folder:{tmp_path / 'pics'}",
            image_size=8,
            valid_fraction=0.0,
            data_dir=str(tmp_path / "datasets"),
        )
    )
    assert int(d.train.images.max()) == 10


def test_a_legacy_relative_folder_is_found_with_data_dir_from_elsewhere(tmp_path, monkeypatch):
    _images(tmp_path / "work" / "good", 3, 7)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # a config.json written before paths were stored absolute
    cfg = DataConfig(name="folder:good", image_size=8, valid_fraction=0.0, data_dir=str(tmp_path / "work"))
    assert int(load_data(cfg).train.images.max()) == 7


def test_an_empty_png_is_named_and_can_be_left_out(tmp_path, capsys):
    _images(tmp_path, 3, 5)
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(DataError) as e:
        load_folder(tmp_path, 8)
    assert str(e.value) == (
        f"{tmp_path / 'zero.png'}: not a readable image (empty file, 0 bytes); 1 of 4 image files in {tmp_path} "
        "cannot be read: fix or remove it, or leave unreadable files out with --set data.skip_bad=true"
    )
    d = load_data(DataConfig(name=f"folder:{tmp_path}", image_size=8, valid_fraction=0.0, skip_bad=True))
    assert len(d.train) + len(d.test) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"vaelab: note: {tmp_path}: left out 1 of 4 image files that cannot be read (first: "
        f"{tmp_path / 'zero.png'}: not a readable image (empty file, 0 bytes))"
    ]


def test_a_folder_of_files_vaelab_does_not_read_says_so_in_its_one_line(tmp_path, capsys):
    _noise(tmp_path / "a.tif", 0, fmt="TIFF")
    with pytest.raises(DataError) as e:
        load_folder(tmp_path, 8)
    assert str(e.value).endswith(f"need at least 2 (1 other files left out, first: {tmp_path / 'a.tif'})")
    assert capsys.readouterr().err == ""  # no note before the error: a failing load is one line


def test_skipping_bad_files_still_needs_two_images(tmp_path):
    _images(tmp_path, 1)
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(DataError, match="found 1 readable images .* need at least 2"):
        load_folder(tmp_path, 8, skip_bad=True)


def test_gif_and_bmp_are_read_and_other_files_are_counted(tmp_path, capsys):
    want = [_noise(tmp_path / f"p{i}.png", i) for i in range(2)]
    want += [_noise(tmp_path / f"g{i}.gif", 10 + i) for i in range(2)]
    want += [_noise(tmp_path / f"b{i}.bmp", 20 + i) for i in range(2)]
    _noise(tmp_path / "t.tif", 30)
    (tmp_path / "notes.txt").write_text("taken on holiday")
    splits = load_folder(tmp_path, 8)
    assert _every(splits) == sorted(bytes(a[None]) for a in want)  # every pixel exactly (lossless formats)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"vaelab: note: {tmp_path}: left out 2 file(s) that are not PNG, JPEG, GIF, BMP, WebP images "
        f"(first: {tmp_path / 'notes.txt'})"
    ]


def test_a_png_named_file_of_another_format_is_read_by_its_content(tmp_path):
    want = _noise(tmp_path / "really_a_bmp.png", 1, fmt="BMP")
    _noise(tmp_path / "b.png", 2)
    assert bytes(want[None]) in _every(load_folder(tmp_path, 8))


def test_hidden_files_and_run_folders_are_not_data(tmp_path, capsys):
    _images(tmp_path / "pics", 3, 10)
    (tmp_path / "pics" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS's metadata twin
    _images(tmp_path / "pics" / ".thumbnails", 2, 50)
    run = tmp_path / "pics" / "run"  # `vaelab train --data folder:. --out run`: its figures are not data
    _images(run / "figures", 2, 200)
    (run / "checkpoints").mkdir()
    (run / "config.json").write_text("{}")
    splits = load_folder(tmp_path / "pics", 8)
    assert splits.train.labels is None and _every(splits) == [bytes(np.full((1, 8, 8), 10, np.uint8))] * 3
    assert (
        capsys.readouterr().err.strip()
        == f"vaelab: note: {tmp_path / 'pics'}: left out 1 vaelab run folder(s) (first: {run})"
    )
