"""folder:PATH sources: centre crop, resize, grey or RGB, labels from subfolders, bad files named."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vaelab.config import DataConfig
from vaelab.data import load_data
from vaelab.data.folder import load_folder, read_image
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


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(DataError, match="found 0 PNG/JPEG images"):
        load_folder(tmp_path, 8)
    with pytest.raises(DataError, match="image folder not found"):
        load_folder(tmp_path / "nope", 8)
