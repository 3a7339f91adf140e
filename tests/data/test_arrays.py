"""`npz:FILE[:KEY]` and `npy:FILE`: shapes, dtypes and ranges read or refused in one line, the npz key
convention (x_train / x_test, y_train / y_test, labels), the seeded test split, and runs that store the file's
absolute path, evaluate from another folder and find a moved file with --data-dir."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vaelab.cli import main
from vaelab.config import DataConfig, split_source
from vaelab.data import load_data, load_source
from vaelab.data.arrays import as_images, npy_splits, npz_splits
from vaelab.data.sources import seeded_split
from vaelab.errors import DataError

FAST = ["--hidden", "16", "--latent-dim", "2", "--epochs", "1", "--quiet", "--threads", "1", "--no-figures"]


def _digits(n: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8), dtype=np.uint8)


@pytest.mark.parametrize(
    ("shape", "want"),
    [
        ((5, 7), (5, 1, 1, 7)),
        ((5, 4, 6), (5, 1, 4, 6)),
        ((5, 1, 4, 6), (5, 1, 4, 6)),
        ((5, 3, 4, 6), (5, 3, 4, 6)),
    ],
)
def test_ranks_become_nchw_and_values_are_kept(shape, want):
    """N x D, N x H x W and N x C x H x W become [N, C, H, W]; uint8 stays uint8, floats stay float32 exactly."""
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, shape, dtype=np.uint8)
    got = as_images(u8, "x")
    assert got.dtype == torch.uint8 and tuple(got.shape) == want
    assert np.array_equal(got.numpy().reshape(shape), u8)
    f = rng.random(shape).astype(np.float64)
    got = as_images(f, "x")
    assert got.dtype == torch.float32 and np.array_equal(got.numpy().reshape(shape), f.astype(np.float32))
    assert as_images(u8 > 127, "x").unique().tolist() in ([0, 255], [0], [255])  # bool: 0 or 255
    assert as_images(u8.astype(np.int64), "x").dtype == torch.uint8  # integers within 0..255 are levels


@pytest.mark.parametrize(
    ("arr", "message"),
    [
        (
            np.zeros(5),
            "x: an array of rank 1 (5); need N x D vectors, N x H x W grey images or N x C x H x W",
        ),
        (np.zeros((2, 1, 2, 2, 2)), "x: an array of rank 5 (2x1x2x2x2)"),
        (
            np.linspace(-3, 7, 20).reshape(4, 5),
            "x: float64 values in [-3, 7]; images must be uint8 in [0, 255] or ",
        ),
        (np.arange(300).reshape(3, 100), "x: int64 values in [0, 299]; images must be uint8"),
        (np.full((2, 3), np.nan), "x: float64 non-finite values (nan)"),
        (np.zeros((4, 28, 28, 3)), "x: 28 channels (4x28x28x3); need 1 (grey) or 3 (RGB) (channels last?"),
    ],
)
def test_arrays_that_are_not_images_are_refused_with_what_was_found(arr, message):
    with pytest.raises(DataError) as e:
        as_images(arr, "x")
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_npz_train_and_test_keys_and_labels(tmp_path):
    """x_train / x_test with y_train / y_test (the Keras convention) are the published split, as stored."""
    x, xt = _digits(50), _digits(12, 1)
    y, yt = np.arange(50) % 3, np.arange(12) % 3
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    s = npz_splits(str(tmp_path / "d.npz"), None)
    assert np.array_equal(s.train.images[:, 0].numpy(), x) and np.array_equal(s.test.images[:, 0].numpy(), xt)
    assert s.train.labels.tolist() == y.tolist() and s.test.labels.tolist() == yt.tolist()


def test_a_single_array_gets_the_folder_rule_split(tmp_path):
    """One array (and `labels`): a fixed seeded 10% test split, stratified, identical to folder:'s rule."""
    x, y = _digits(60), np.arange(60) % 4
    np.savez(tmp_path / "one.npz", images=x, labels=y)
    s = npz_splits(str(tmp_path / "one.npz"), None)
    ref = seeded_split(torch.from_numpy(x[:, None]), torch.from_numpy(y), 6, "ref")
    assert torch.equal(s.train.images, ref.train.images) and torch.equal(s.test.labels, ref.test.labels)
    assert sorted(s.test.labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]  # stratified: every class's share
    np.save(tmp_path / "one.npy", x)
    unlabelled = seeded_split(torch.from_numpy(x[:, None]), None, 6, "ref")  # npy: no labels, no strata
    assert torch.equal(npy_splits(str(tmp_path / "one.npy")).test.images, unlabelled.test.images)


def test_npz_key_chooses_the_array_and_a_missing_key_lists_the_keys(tmp_path):
    np.savez(tmp_path / "k.npz", faces=_digits(20), other=_digits(30, 2))
    path = str(tmp_path / "k.npz")
    s = npz_splits(path, "other")
    assert len(s.train) + len(s.test) == 30
    with pytest.raises(DataError, match=r"k.npz: no array 'imgs'; it has: faces, other$"):
        npz_splits(path, "imgs")
    with pytest.raises(
        DataError, match=r"which array holds the images\? it has: faces, other; name one: npz:"
    ):
        npz_splits(path, None)


def test_data_names_split_and_are_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert split_source("npz:a/b.npz:x_train") == ("npz", "a/b.npz", "x_train")
    assert split_source("npz:a/b.npz") == ("npz", "a/b.npz", None)
    assert split_source("mnist") == ("", "mnist", None)
    assert DataConfig(name="npz:d.npz:imgs").name == f"npz:{tmp_path / 'd.npz'}:imgs"
    assert DataConfig(name="npy:~/x.npy").name.startswith("npy:/")


def test_npz_runs_end_to_end_from_another_folder_and_after_a_move(tmp_path, monkeypatch, capsys):
    """The run's config names the file absolutely; eval reads the same test split from elsewhere; after the
    file moves, --data-dir finds it."""
    (tmp_path / "work").mkdir()
    np.savez(tmp_path / "work" / "d.npz", x_train=_digits(60), x_test=_digits(10, 3))
    monkeypatch.chdir(tmp_path / "work")
    assert main(["train", "--data", "npz:d.npz", *FAST, "--out", "run"]) == 0
    cfg = json.loads((tmp_path / "work" / "run" / "config.json").read_text())
    assert cfg["data"]["name"] == f"npz:{tmp_path / 'work' / 'd.npz'}"
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "e.json"
    assert main(["eval", "work/run", "--importance", "2", "--quiet", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["data"] == cfg["data"]["name"]
    (tmp_path / "moved").mkdir()
    (tmp_path / "work" / "d.npz").rename(tmp_path / "moved" / "d.npz")
    capsys.readouterr()
    assert main(["eval", "work/run", "--importance", "2", "--quiet", "--out", str(out)]) == 1
    assert "npz file not found" in capsys.readouterr().err
    args = ["eval", "work/run", "--importance", "2", "--quiet", "--data-dir", "moved", "--out", str(out)]
    assert main(args) == 0


@pytest.mark.parametrize(
    ("arrays", "name", "message"),
    [
        ({"x": _digits(20)}, "npz:{d}/bad.npz:imgs", "bad.npz: no array 'imgs'; it has: x"),
        ({"x": np.arange(20)}, "npz:{d}/bad.npz", "bad.npz:x: an array of rank 1 (20)"),
        ({"x": np.zeros((3, 1, 2, 2, 2))}, "npz:{d}/bad.npz", "an array of rank 5 (3x1x2x2x2)"),
        ({"x": np.linspace(0, 2, 40).reshape(10, 4)}, "npz:{d}/bad.npz", "float64 values in [0, 2]"),
    ],
)
def test_bad_arrays_are_one_line_and_write_nothing(tmp_path, capsys, one_line_error, arrays, name, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    code = main(["train", "--data", name.format(d=tmp_path), *FAST, "--out", str(tmp_path / "run")])
    one_line_error(capsys, code, message)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_load_data_carves_validation_from_an_npz(tmp_path):
    np.savez(tmp_path / "d.npz", x=_digits(100))
    cfg = DataConfig(name=f"npz:{tmp_path / 'd.npz'}", valid_fraction=0.2)
    d = load_data(cfg)
    assert (len(d.train), len(d.valid), len(d.test)) == (72, 18, 10)
    assert torch.equal(load_source(cfg).test.images, d.test.images)
    with pytest.raises(DataError, match="data.columns applies to tables"):
        load_data(DataConfig(name=cfg.name, columns={"a": "binary"}))


# Float arrays keep the flags' binarization (default dynamic): floats in [0, 1] may be grey images that a Bernoulli
# VAE binarizes (torchvision's ToTensor() MNIST). A likelihood of grey levels chosen without --binarize none
# would train on binarized pixels: one warning line on stderr at the start, and training goes on.
@pytest.mark.parametrize(
    ("flags", "warned"),
    [
        ([], False),  # bernoulli on floats in [0, 1]: binarized, as intended
        (["--likelihood", "gaussian"], True),
        (["--likelihood", "continuous-bernoulli", "--binarize", "static"], True),
        (["--likelihood", "gaussian", "--binarize", "none"], False),
    ],
)
def test_a_grey_level_likelihood_on_binarized_floats_warns_in_one_line(tmp_path, capsys, flags, warned):
    x = np.random.default_rng(0).random((40, 6, 6), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        f"npy:{tmp_path / 'x.npy'}",
        *flags,
        "--epochs",
        "0",
        "--quiet",
        "--threads",
        "1",
    ]
    assert main([*args, "--no-figures", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("warning: likelihood")]
    cfg = json.loads((run / "config.json").read_text())
    if warned:
        (line,) = lines
        lik, binarize = cfg["model"]["likelihood"], cfg["data"]["binarize"]
        assert f"likelihood '{lik}' models grey levels, but --binarize {binarize} turns the pixels" in line
        assert line.endswith("pass --binarize none for grey levels")
    else:
        assert lines == []
    assert cfg["data"]["binarize"] == (
        "none" if "none" in flags else "static" if "static" in flags else "dynamic"
    )


# --- files that are not npz / npy: their cause named, not "pickled"; `vaelab data info` in the data's scale ---


def _saved(save, *args, **kwargs) -> bytes:
    """What np.save or np.savez writes, as bytes (to write under any file name)."""
    import io

    buf = io.BytesIO()
    save(buf, *args, **kwargs)
    return buf.getvalue()


def _zip_of_text(path) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "not an array")


@pytest.mark.parametrize(
    ("kind", "write", "message"),
    [
        (
            "npz",
            lambda p: p.write_bytes(np.random.default_rng(0).bytes(300)),
            "is not an .npz file (a zip of .npy",
        ),
        ("npz", lambda p: p.write_text("a,b\n1,2\n3,4\n"), "is not an .npz file (a zip of .npy arrays)"),
        ("npz", lambda p: p.write_bytes(b""), "is not an .npz file (a zip of .npy arrays); it is empty"),
        ("npz", _zip_of_text, "is not an .npz file (a zip of .npy arrays): its member 'notes.txt'"),
        (
            "npz",
            lambda p: p.write_bytes(_saved(np.save, _digits(20))),
            "a single array (.npy), not an npz archive; use npy:",
        ),
        ("npy", lambda p: p.write_bytes(np.random.default_rng(0).bytes(300)), "is not an .npy file"),
        ("npy", lambda p: p.write_text("a,b\n1,2\n3,4\n"), "is not an .npy file"),
        (
            "npy",
            lambda p: p.write_bytes(_saved(np.savez, x=_digits(20))),
            "an npz archive, not a single array; use npz:",
        ),
        (
            "npz",
            lambda p: p.write_bytes(_saved(np.savez, x=np.array([1, "a"], dtype=object))),
            "holds Python objects",
        ),
        (
            "npy",
            lambda p: p.write_bytes(_saved(np.save, np.array([1, "a"], dtype=object))),
            "holds Python objects",
        ),
    ],
)
def test_a_file_that_is_not_an_array_file_says_so(tmp_path, kind, write, message):
    path = tmp_path / f"d.{kind}"
    write(path)
    with pytest.raises(DataError) as e:
        npz_splits(str(path), None) if kind == "npz" else npy_splits(str(path))
    msg = str(e.value)
    assert msg.startswith(f"{kind}:{path}") and message in msg and "\n" not in msg
    if "Python objects" not in message:
        assert "pickled" not in msg


@pytest.mark.parametrize("kind", ["npz", "npy"])
def test_a_csv_passed_as_an_array_is_exit_1_and_trains_nothing(tmp_path, capsys, one_line_error, kind):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4\n")
    code = main(["train", "--data", f"{kind}:{tmp_path / 't.csv'}", *FAST, "--out", str(tmp_path / "run")])
    one_line_error(capsys, code, f"{kind}:{tmp_path / 't.csv'} is not an .{kind} file")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("x", "scale"),
    [
        (np.full((40, 6, 6), 0.25, dtype=np.float32), "of 1,"),
        (np.full((40, 6, 6), 64, dtype=np.uint8), "of 255,"),
    ],
)
def test_data_info_gives_the_mean_intensity_in_the_datas_scale(tmp_path, capsys, x, scale):
    np.save(tmp_path / "x.npy", x)
    assert main(["data", "info", f"npy:{tmp_path / 'x.npy'}"]) == 0
    out = capsys.readouterr().out.splitlines()
    mean = "0.250" if x.dtype == np.float32 else "64.000"
    assert out == [
        f"train     36 images of (1, 6, 6), mean intensity {mean} {scale} no labels",
        f"test       4 images of (1, 6, 6), mean intensity {mean} {scale} no labels",
    ]
