"""`npz:FILE[:KEY]` and `npy:FILE`: images or vectors from NumPy files, and the rule every array in follows.

An array is N x H x W (grey images), N x C x H x W (C = 1 grey or 3 RGB) or N x D (vectors, held as 1 x 1 x D).
Its values are 8-bit levels (uint8, or any integer type within 0..255; bool is 0 or 255) or floats in [0, 1]
(kept as float32, not rounded to 8 bits); anything else is refused with the range found, since a VAE's image
likelihoods (Bernoulli, continuous Bernoulli, discretized logistic) are densities on [0, 1] only. Real-valued
columns belong in a table (`csv:FILE`, `vaelab.data.tables`), which standardises them. `vaelab.train(cfg,
data=...)` sends tensors through the same rule (`vaelab.data.python`).

Which arrays of an npz are read (the Keras convention, so `mnist.npz` files read as they are):
- the images: KEY when given; else `x_train`; else `images`, `x`, `arr_0`, `train`; else the file's only array;
- the test split: the images key with `train` replaced by `test` (`x_train` -> `x_test`, `train` -> `test`)
  when the file has it; otherwise a fixed seeded 10% of the images (seed 0, stratified by label), the rule
  of `folder:`, so a run's config (which stores the file's absolute path) reproduces it at evaluation;
- labels: `y_train` / `y_test` beside `x_train` / `x_test` (the images key with `x` replaced by `y`), else
  `labels` (and `labels_test` for a test array), integers >= 0, one per image.
A file that moved: `--data-dir DIR` looks for DIR/NAME (NAME the file's name), as for `folder:`.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from vaelab.data.sources import ImageSet, Splits, seeded_split
from vaelab.errors import DataError

# An npz's images, in the order they are looked for when no KEY is given (after x_train).
IMAGE_KEYS = ("x_train", "images", "x", "arr_0", "train")
CHANNELS = (1, 3)


def find_file(path: str, data_dir: str | os.PathLike | None, kind: str) -> Path:
    """The file a KIND:FILE data name means, with `data_dir` re-pointing a file that moved.

    Args:
        path: the file as stored in the run's config.
        data_dir: --data-dir, or None: DIR/NAME is looked at first, then `path`.
        kind: the source kind (npz, npy, csv, parquet), for messages.
    """
    if not str(path).strip():
        raise DataError(f"--data {kind}: has an empty path (an unset shell variable?); give {kind}:FILE")
    file = Path(path).expanduser()
    places = [file]
    if data_dir is not None and str(data_dir).strip():
        places = [Path(data_dir).expanduser() / file.name, file]
    for place in places:
        if place.is_file():
            return place
    if file.is_dir():
        raise DataError(f"{kind}:{file}: a folder, not a file")
    hint = (
        f"; if it moved, pass --data-dir DIR with DIR/{file.name} its new place" if len(places) == 1 else ""
    )
    raise DataError(f"{kind} file not found: {', '.join(map(str, places))}{hint}")


def _range(arr: np.ndarray) -> str:
    if arr.size == 0:
        return "no values"
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = arr[~np.isfinite(arr)][0]
        return f"non-finite values ({bad})"
    return f"values in [{arr.min():g}, {arr.max():g}]"


def as_images(arr: np.ndarray | torch.Tensor, where: str) -> torch.Tensor:
    """An array as uint8 levels or float32 intensities [N, C, H, W] (module docstring); a DataError naming
    `where` and what was found otherwise.

    Args:
        arr: N x H x W, N x C x H x W or N x D values.
        where: the array's name in messages (FILE:KEY, or "data=").
    """
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().numpy()
    arr = np.asarray(arr)
    shape = "x".join(map(str, arr.shape))
    if arr.ndim not in (2, 3, 4):
        raise DataError(
            f"{where}: an array of rank {arr.ndim} ({shape or 'a scalar'}); need N x D vectors, N x H x W grey "
            "images or N x C x H x W images"
        )
    if arr.shape[0] == 0 or arr.size == 0:
        raise DataError(f"{where}: an empty array ({shape})")
    if arr.ndim == 4 and arr.shape[1] not in CHANNELS:
        last = " (channels last? transpose to N x C x H x W)" if arr.shape[3] in CHANNELS else ""
        raise DataError(f"{where}: {arr.shape[1]} channels ({shape}); need 1 (grey) or 3 (RGB){last}")
    nchw = arr.reshape(arr.shape[0], 1, 1, -1) if arr.ndim == 2 else arr[:, None] if arr.ndim == 3 else arr
    kind = arr.dtype.kind
    if kind == "b":
        return torch.from_numpy(np.ascontiguousarray(nchw, dtype=np.uint8) * np.uint8(255))
    if kind in "ui" and arr.min() >= 0 and arr.max() <= 255:
        return torch.from_numpy(np.ascontiguousarray(nchw, dtype=np.uint8))
    if kind == "f" and np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1:
        return torch.from_numpy(np.ascontiguousarray(nchw, dtype=np.float32))
    raise DataError(
        f"{where}: {arr.dtype} {_range(arr)}; images must be uint8 in [0, 255] or floats in [0, 1] "
        "(rescale them; real-valued columns: a table, csv:FILE)"
    )


def as_labels(arr: np.ndarray | torch.Tensor, n: int, where: str) -> torch.Tensor:
    """Labels as int64 [n]: whole numbers >= 0, one per datum; a DataError naming `where` otherwise.

    Args:
        arr: the labels.
        n: how many data they label.
        where: the array's name in messages.
    """
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().numpy()
    arr = np.asarray(arr)
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(f"{where}: labels must be one per datum, [{n}], got shape {arr.shape}")
    whole = arr.dtype.kind in "uib" or (
        arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all()
    )
    if not whole or (n and arr.min() < 0):
        raise DataError(f"{where}: labels must be whole numbers >= 0, got {arr.dtype} {_range(arr)}")
    return torch.from_numpy(arr.astype(np.int64))


def split_of(images: torch.Tensor, labels: torch.Tensor | None, name: str) -> Splits:
    """A fixed seeded 10% test split (at least one datum; stratified by label), the rule of `folder:`.

    Args:
        images: every datum [N, C, H, W].
        labels: their labels, or None.
        name: the data's name (the splits are NAME/train and NAME/test).
    """
    if len(images) < 2:
        raise DataError(f"{name}: {len(images)} datum; need at least 2 (one for the test split)")
    return seeded_split(images, labels, max(1, len(images) // 10), name)


# A file's first bytes say what it is: an npz is a zip (a local file header, or an empty zip's end record),
# an npy begins with its format's magic string.
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
NPY_MAGIC = b"\x93NUMPY"


def _head(file: Path, kind: str) -> bytes:
    """The first bytes of `file`, enough to tell a zip from an npy from anything else."""
    try:
        with open(file, "rb") as f:
            return f.read(len(NPY_MAGIC))
    except OSError as e:
        raise DataError(f"{kind}:{file}: cannot be read ({type(e).__name__}: {e})") from None


def _what_else(head: bytes) -> str:
    """What a file that is neither npz nor npy holds, as far as its first bytes tell (for messages)."""
    if not head:
        return "; it is empty (0 bytes)"
    return ""


def _open_npz(file: Path) -> dict[str, np.ndarray]:
    head = _head(file, "npz")
    if head.startswith(NPY_MAGIC):
        raise DataError(f"npz:{file}: a single array (.npy), not an npz archive; use npy:{file}")
    if not head.startswith(ZIP_MAGIC):
        raise DataError(f"npz:{file} is not an .npz file (a zip of .npy arrays){_what_else(head)}")
    try:
        z = np.load(file, allow_pickle=False)
        with z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(f"npz:{file}: holds Python objects (pickled), which are not read") from None
        raise DataError(f"npz:{file}: not a readable npz file ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"npz:{file}: not a readable npz file ({type(e).__name__}: {e})") from None
    other = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
    if other:  # numpy hands back a member that is no .npy array as its raw bytes
        raise DataError(
            f"npz:{file} is not an .npz file (a zip of .npy arrays): its member '{other[0]}' is not an .npy array"
        )
    return arrays


def _image_key(arrays: dict[str, np.ndarray], key: str | None, file: Path) -> str:
    have = ", ".join(arrays) or "none"
    if key is not None:
        if key not in arrays:
            raise DataError(f"npz:{file}: no array '{key}'; it has: {have}")
        return key
    for k in IMAGE_KEYS:
        if k in arrays:
            return k
    candidates = [k for k in arrays if "label" not in k and not k.startswith("y")]
    if len(candidates) == 1:
        return candidates[0]
    raise DataError(f"npz:{file}: which array holds the images? it has: {have}; name one: npz:{file}:KEY")


def _labels_key(arrays: dict[str, np.ndarray], images_key: str, fallback: str) -> str | None:
    paired = "y" + images_key[1:] if images_key.startswith("x") else None
    for k in (paired, fallback):
        if k is not None and k in arrays:
            return k
    return None


def npz_splits(path: str, key: str | None, data_dir: str | os.PathLike | None = None) -> Splits:
    """The train and test splits of `npz:FILE[:KEY]` (module docstring).

    Args:
        path: the file.
        key: the images' array, or None to look for one.
        data_dir: where the file is now, if it moved.
    """
    file = find_file(path, data_dir, "npz")
    arrays = _open_npz(file)
    k = _image_key(arrays, key, file)
    test_key = k.replace("train", "test") if "train" in k else None
    images = as_images(arrays[k], f"npz:{file}:{k}")
    lk = _labels_key(arrays, k, "labels")
    labels = None if lk is None else as_labels(arrays[lk], len(images), f"npz:{file}:{lk}")
    name = f"npz:{file.name}"
    if test_key is None or test_key not in arrays:
        return split_of(images, labels, name)
    test = as_images(arrays[test_key], f"npz:{file}:{test_key}")
    if test.shape[1:] != images.shape[1:] or test.dtype != images.dtype:
        raise DataError(
            f"npz:{file}: {test_key} is {test.dtype} {tuple(test.shape[1:])} per datum, {k} is "
            f"{images.dtype} {tuple(images.shape[1:])}: they must match"
        )
    tk = _labels_key(arrays, test_key, "labels_test")
    test_labels = None if tk is None else as_labels(arrays[tk], len(test), f"npz:{file}:{tk}")
    return Splits(ImageSet(images, labels, f"{name}/train"), ImageSet(test, test_labels, f"{name}/test"))


def npy_splits(path: str, data_dir: str | os.PathLike | None = None) -> Splits:
    """`npy:FILE`: one array of images or vectors, no labels, a fixed seeded 10% test split.

    Args:
        path: the file.
        data_dir: where the file is now, if it moved.
    """
    file = find_file(path, data_dir, "npy")
    head = _head(file, "npy")
    if head.startswith(ZIP_MAGIC):
        raise DataError(f"npy:{file}: an npz archive, not a single array; use npz:{file}")
    if not head.startswith(NPY_MAGIC):
        raise DataError(
            f"npy:{file} is not an .npy file (a NumPy array saved by numpy.save){_what_else(head)}"
        )
    try:
        arr = np.load(file, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(f"npy:{file}: holds Python objects (pickled), which are not read") from None
        raise DataError(f"npy:{file}: not a readable .npy file ({e})") from None
    except (OSError, EOFError) as e:
        raise DataError(f"npy:{file}: not a readable .npy file ({type(e).__name__}: {e})") from None
    if not isinstance(arr, np.ndarray):
        raise DataError(f"npy:{file}: an npz archive, not a single array; use npz:{file}")
    return split_of(as_images(arr, f"npy:{file}"), None, f"npy:{file.name}")
