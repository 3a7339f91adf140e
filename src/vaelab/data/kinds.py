"""The data kinds named KIND:PATH besides `folder:`: arrays (`npz:FILE[:KEY]`, `npy:FILE`) and tables
(`csv:FILE`, `parquet:FILE`), one loader each in `KINDS` (`vaelab.data.load_source` reads `folder:` itself).

A kind that is not a table refuses the table settings (`data.columns`, `data.missing`, `data.table`), and a
table refuses binarization: its rows are values, not intensities.
"""

from __future__ import annotations

from collections.abc import Callable

from vaelab.config import DataConfig
from vaelab.data.arrays import npy_splits, npz_splits
from vaelab.data.sources import Splits
from vaelab.data.tables import table_splits
from vaelab.errors import DataError
from vaelab.registry import Registry

Loader = Callable[[str, "str | None", DataConfig], Splits]

TABLE_KINDS = ("csv", "parquet")


def _table(kind: str) -> Loader:
    def load(path: str, key: str | None, cfg: DataConfig) -> Splits:
        if cfg.binarize != "none":
            raise DataError(
                f"{kind}:{path} is a table: its columns are values, not grey levels to binarize; pass "
                f"--binarize none (got {cfg.binarize})"
            )
        return table_splits(kind, path, cfg.data_dir, cfg.columns, cfg.missing, cfg.table)

    return load


KINDS: Registry[Loader] = Registry(
    "data kind",
    {
        "npz": lambda path, key, cfg: npz_splits(path, key, cfg.data_dir),
        "npy": lambda path, key, cfg: npy_splits(path, cfg.data_dir),
        "csv": _table("csv"),
        "parquet": _table("parquet"),
    },
)


def load_kind(kind: str, path: str, key: str | None, cfg: DataConfig) -> Splits:
    """The train and test splits of the data named KIND:PATH[:KEY].

    Args:
        kind: npz, npy, csv or parquet.
        path: the file.
        key: an npz's array, or None.
        cfg: the data settings (data_dir; a table's columns, missing and table).
    """
    if kind not in TABLE_KINDS:
        default = DataConfig()
        for name in ("columns", "missing", "table"):
            if getattr(cfg, name) != getattr(default, name):
                raise DataError(f"data.{name} applies to tables (csv:FILE, parquet:FILE) only; leave it out")
    return KINDS.lookup(kind)(path, key, cfg)
