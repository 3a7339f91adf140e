"""`vaelab.train(cfg, data=...)`: tensors, a (train, test) pair or any torch Dataset as a run's data.

`data` may be:
- a tensor or NumPy array of N images or vectors (the rule of `vaelab.data.arrays`: N x H x W, N x C x H x W or
  N x D; uint8 levels or floats in [0, 1]); a fixed seeded 10% becomes the test split;
- a `torch.utils.data.Dataset` (map-style or iterable) whose items are such a datum (a tensor, an array or a
  PIL image) or an `(x, y)` pair with an integer label y (`TensorDataset(x, y)` gives labels to tensors);
  every item must have one shape, or the first that differs is named;
- a `(train, test)` pair of either;
- `vaelab.data.DataSplits`, used as they are.

The data is saved in the run folder as `RUN/data.npz` (x_train, y_train, x_test, y_test) and the run's config
names it (`data.name: npz:RUN/data.npz`, `vaelab.data.arrays`'s convention). Why saved rather than asked for
again: the run folder is the single source of truth. `vaelab eval RUN`, `figures`, `report` and `serve` then
read the very rows the model trained and was tested on, from any process, with no Python object to pass and
nothing that can silently differ; the cost is one copy on disk of what training already holds in memory. A run
folder that moved finds it with `--data-dir RUN`. Without a run folder (`out=None`) nothing is written and
the config says `data.name: python`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sized
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.data.arrays import as_images, as_labels, split_of
from vaelab.data.sources import ImageSet, Splits
from vaelab.errors import DataError
from vaelab.io import atomic_write_bytes

PYTHON = "python"  # data.name of data passed from Python without a run folder
DATA_FILE = "data.npz"  # where a run keeps data passed from Python
TABLE_FILE = "data.csv"  # where a run keeps a table (DataFrame) passed from Python
STAGED = ".staged-data"  # RUN/.staged-data: a start over a trained run keeps its data here until the run is cleared


def _datum(item: Any) -> np.ndarray:
    """One datum as an array (a PIL image's channels moved first)."""
    if isinstance(item, torch.Tensor):
        return item.detach().cpu().numpy()
    if isinstance(item, np.ndarray):
        return item
    if hasattr(item, "getbands"):  # a PIL image: H x W, or H x W x C
        arr = np.asarray(item)
        return arr.transpose(2, 0, 1) if arr.ndim == 3 else arr
    if isinstance(item, int | float | bool | np.generic):
        return np.asarray(item)
    raise DataError(f"a {type(item).__name__}, not a tensor, array or PIL image")


def _label(y: Any) -> int:
    """A label as an int, or a DataError saying what it is."""
    if isinstance(y, torch.Tensor | np.ndarray | np.generic):
        if (y.numel() if isinstance(y, torch.Tensor) else np.size(y)) != 1:
            raise DataError(f"a label of shape {tuple(np.shape(y))}, not one number")
        y = y.item()
    if isinstance(y, float) and y.is_integer():
        y = int(y)
    if not isinstance(y, int) or isinstance(y, bool) or y < 0:
        raise DataError(f"label {y!r} is not a whole number >= 0")
    return y


def from_dataset(ds: Any, where: str = "data") -> ImageSet:
    """Every item of a Dataset (map-style or iterable) stacked in memory; one line naming the first item
    whose shape, type or label differs from item 0's.

    Args:
        ds: the dataset.
        where: its name in messages.
    """
    n = len(ds) if isinstance(ds, Sized) else None
    items = (ds[i] for i in range(n)) if n is not None and hasattr(ds, "__getitem__") else iter(ds)
    xs: list[np.ndarray] = []
    ys: list[int] = []
    first: tuple[tuple[int, ...], np.dtype, bool] | None = None
    for i, item in enumerate(items):
        pair = isinstance(item, tuple | list)
        if pair and len(item) != 2:
            raise DataError(f"{where}: item {i} is a {type(item).__name__} of {len(item)}; need x or (x, y)")
        try:
            x = _datum(item[0] if pair else item)
            y = _label(item[1]) if pair else None
        except DataError as e:
            raise DataError(f"{where}: item {i}: {e}") from None
        this = (x.shape, x.dtype, pair)
        if first is None:
            first = this
        elif this != first:
            if x.shape != first[0]:
                what = f"shape {x.shape}, item 0 has {first[0]}"
            elif x.dtype != first[1]:
                what = f"type {x.dtype}, item 0 has {first[1]}"
            else:
                what = "a label, item 0 has none" if pair else "no label, item 0 has one"
            raise DataError(f"{where}: item {i} has {what}: every item must have the same shape and type")
        xs.append(x)
        if y is not None:
            ys.append(y)
    if first is None:
        raise DataError(f"{where}: the dataset is empty")
    images = as_images(np.stack(xs), where)
    labels = as_labels(np.asarray(ys), len(xs), f"{where} labels") if first[2] else None
    return ImageSet(images, labels, PYTHON)


def as_set(obj: Any, where: str) -> ImageSet:
    """A tensor, array or Dataset as an ImageSet (module docstring).

    Args:
        obj: the data.
        where: its name in messages.
    """
    if isinstance(obj, torch.Tensor | np.ndarray):
        return ImageSet(as_images(obj, where), None, PYTHON)
    if isinstance(obj, torch.utils.data.Dataset) or hasattr(obj, "__getitem__") or hasattr(obj, "__iter__"):
        return from_dataset(obj, where)
    raise DataError(
        f"{where}: a {type(obj).__name__}; pass a tensor, an array, a torch Dataset, or a (train, test) pair"
    )


def python_splits(data: Any) -> Splits:
    """The train and test splits of data passed from Python (module docstring).

    Args:
        data: a tensor or array, a Dataset, or a (train, test) pair of them.
    """
    if isinstance(data, tuple | list):
        if len(data) != 2:
            raise DataError(f"data=: a {type(data).__name__} of {len(data)}; a pair means (train, test)")
        train, test = data
        if isinstance(test, torch.Tensor | np.ndarray) and np.ndim(test) == 1:
            raise DataError(
                "data=(train, test): the test part is one number per datum (labels?); give images labels with "
                "torch.utils.data.TensorDataset(x, y), and a pair as (train, test)"
            )
        tr, te = as_set(train, "data= train"), as_set(test, "data= test")
        if tr.shape != te.shape or tr.images.dtype != te.images.dtype:
            raise DataError(
                f"data=(train, test): train is {tr.images.dtype} {tuple(tr.shape)} per datum, test is "
                f"{te.images.dtype} {tuple(te.shape)}: they must match"
            )
        if (tr.labels is None) != (te.labels is None):
            raise DataError(
                "data=(train, test): one part has labels and the other none: label both or neither"
            )
        return Splits(
            ImageSet(tr.images, tr.labels, f"{PYTHON}/train"),
            ImageSet(te.images, te.labels, f"{PYTHON}/test"),
        )
    whole = as_set(data, "data=")
    return split_of(whole.images, whole.labels, PYTHON)


def save_splits(splits: Splits, folder: str | os.PathLike) -> Path:
    """Write train and test as FOLDER/data.npz (x_train, y_train, x_test, y_test; labels when there are),
    atomically; returns the file.

    Args:
        splits: the data.
        folder: the run folder.
    """
    arrays = {"x_train": splits.train.images.numpy(), "x_test": splits.test.images.numpy()}
    if splits.train.labels is not None and splits.test.labels is not None:
        arrays.update(y_train=splits.train.labels.numpy(), y_test=splits.test.labels.numpy())
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    file = Path(folder) / DATA_FILE
    file.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(file, buf.getvalue())


def adopt_staged(cfg: Any, folder: str | os.PathLike) -> Any:
    """Move the data file `resolve_data` wrote into FOLDER/.staged-data (`STAGED`) to FOLDER, once the old run
    there is cleared; returns `cfg` with data.name naming it there (as it was, when nothing was staged: a named
    data set).

    Args:
        cfg: the Config whose data.name ('npz:FILE' or 'csv:FILE') names the staged file.
        folder: the run folder.
    """
    import shutil

    folder = Path(folder)
    kind, _, name = cfg.data.name.partition(":")
    staged = Path(name)
    if staged.parent == folder / STAGED and staged.is_file():
        os.replace(staged, folder / staged.name)
        cfg = cfg.replace(**{"data.name": f"{kind}:{folder / staged.name}"})
    shutil.rmtree(folder / STAGED, ignore_errors=True)
    return cfg


def _is_frame(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "to_csv")


def resolve_data(cfg: Any, data: Any, folder: str | os.PathLike | None) -> tuple[Any, Any]:
    """The splits a run trains on and its config naming them: `data` None reads `cfg.data`; DataSplits are
    used as they are; anything else is data from Python (module docstring), saved in `folder` (the run) when
    given. A table's encoding goes into the config (`data.table`, and its layout, `model.table`, which the
    likelihood `mixed` is built with); a table's defaults (`vaelab.data.kinds.table_defaults`: binarize none,
    likelihood mixed) apply where the config keeps the defaults' values, and a table and the likelihood
    `mixed` go together (one line if not).

    Args:
        cfg: the run's Config.
        data: None, DataSplits, or data from Python (a tensor, array, Dataset, (train, test) pair, or a
            pandas DataFrame, read as a table).
        folder: the run folder, or None (a run without files, or a rank other than the first).
    """
    import shutil
    import tempfile

    from vaelab.data import DataSplits, load_data
    from vaelab.data.kinds import table_defaults

    if data is None or _is_frame(data):
        cfg = table_defaults(cfg, table=True if data is not None else None)
    if data is None:
        splits = load_data(cfg.data)
    elif isinstance(data, DataSplits):
        splits = data
    elif _is_frame(data):  # a table: written as CSV and read as csv:FILE (the same kinds and encoding)
        where = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="vaelab-table-"))
        try:
            file = where / TABLE_FILE
            where.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(file, data.to_csv(index=False).encode("utf-8"))
            cfg = cfg.replace(**{"data.name": f"csv:{file}"})
            splits = load_data(cfg.data)
        finally:
            if folder is None:
                shutil.rmtree(where, ignore_errors=True)
        if folder is None:
            cfg = cfg.replace(**{"data.name": PYTHON})
    else:
        given = python_splits(data)
        if folder is not None:
            cfg = cfg.replace(**{"data.name": f"npz:{save_splits(given, folder)}"})
            splits = load_data(cfg.data)  # read back as evaluation will read it
        else:
            cfg = cfg.replace(**{"data.name": PYTHON})
            splits = load_data(cfg.data, given)
    table = splits.train.table
    if table is not None:
        if cfg.model.likelihood != "mixed":
            raise DataError(
                f"{cfg.data.name} is a table: its rows are modelled column by column by --likelihood mixed "
                f"(got {cfg.model.likelihood})"
            )
        if cfg.model.body != "mlp":
            raise DataError(f"{cfg.data.name} is a table: its rows take the mlp body (got {cfg.model.body})")
        if not cfg.data.table:
            cfg = cfg.replace(**{"data.table": table.to_dict()})
        layout = table.model_table()  # what the likelihood mixed is built with, from the encoding used
        if not cfg.model.table:
            cfg = cfg.replace(**{"model.table": layout})
        elif cfg.model.table != layout:
            raise DataError(
                f"{cfg.data.name}: model.table does not lay out this table's columns (data.table); leave "
                "model.table out, training writes it"
            )
    elif cfg.model.table:
        raise DataError(f"model.table is a table's layout, and {cfg.data.name} holds images; leave it out")
    elif cfg.model.likelihood == "mixed":
        raise DataError(
            f"likelihood 'mixed' models a table's rows (csv:FILE, parquet:FILE, a DataFrame); {cfg.data.name} "
            "holds images: choose an image likelihood"
        )
    return splits, cfg
