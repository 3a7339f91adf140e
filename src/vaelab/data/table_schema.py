"""A table's columns as vaelab models them (`Column`, `TableSchema`): each column's kind, levels, mean and sd, the
encoding of the user's rows into the model's [N, 2, 1, W] values and mask, and back to the user's units and
levels (`TableSchema.to_frame`). Inferred from a file by `vaelab.data.tables`, stored in a run's config as
`data.table`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vaelab.distributions.mixed import TableLayout, table_layout
from vaelab.errors import DataError
from vaelab.registry import Registry

# What `data.columns.NAME` may say.
COLUMN_KINDS: Registry[str] = Registry(
    "column kind",
    {
        "continuous": "a Normal in the column's units, standardised by its training rows' mean and sd",
        "binary": "a Bernoulli over its two values",
        "categorical": "a Categorical over its levels",
        "drop": "left out of the data",
    },
)
MISSING: Registry[str] = Registry(
    "missing-cell policy",
    {
        "refuse": "a missing cell stops the load, named",
        "mask": "missing cells are left out of the likelihood",
    },
)
MAX_LEVELS = 100  # an inferred categorical column has at most this many levels
MAX_CHOSEN_LEVELS = 1000  # ... and one set categorical with data.columns at most this many
STRAY_CELLS = 3  # a text column whose cells are numbers but at most this many (or 1%) is refused, naming one


def column_list(frame: Any) -> str:
    """A frame's column names for a message (the first 20, then how many)."""
    names = [str(c) for c in frame.columns]
    return ", ".join(names[:20]) + (f", ... ({len(names)} columns)" if len(names) > 20 else "")


def show_levels(levels: Any) -> str:
    """A column's levels for a message (the first 6)."""
    shown = [repr(plain_value(v)) for v in list(levels)[:6]]
    return ", ".join(shown) + (", ..." if len(levels) > 6 else "")


def column_numbers(s: Any, name: str, source: str) -> np.ndarray:
    """A column as float64 (a missing cell NaN), or a DataError naming the first cell that is no number or
    not finite (inf, -inf)."""
    import pandas as pd

    num = pd.to_numeric(s, errors="coerce")
    bad = num.isna() & s.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{source}: row {row + 1}, column '{name}' holds {plain_value(s.iloc[row])!r}, not a number: a continuous column "
            f"is numbers (or set its kind: --set data.columns.{name}=categorical)"
        )
    values = num.to_numpy(dtype=np.float64)
    infinite = np.isinf(values)
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        more = int(infinite.sum()) - 1
        rest = f" (and {more:,} more infinite cell{'s' * (more != 1)})" if more else ""
        raise DataError(
            f"{source}: row {row + 1} (line {row + 2}), column '{name}' holds {values[row]:g}, not a finite "
            f"number{rest}; a column of numbers takes finite values: fix the cell, or empty it and leave missing "
            "cells out of the likelihood with --set data.missing=mask"
        )
    return values


def mostly_numbers(seen: Any) -> bool:
    """Whether a text column's non-empty cells are numbers but a few: at most `STRAY_CELLS` or 1% of them
    (whichever is more) are not, and those are at most a tenth of the cells. Such a column is numbers with
    typos (`oops`, `?`), not a categorical one with as many levels as distinct numbers."""
    import pandas as pd

    stray = int(pd.to_numeric(seen, errors="coerce").isna().sum())
    return 0 < stray <= max(STRAY_CELLS, len(seen) // 100) and stray * 10 <= len(seen)


def _refuse_missing(frame: Any, source: str) -> None:
    """A DataError naming the first missing cell (row, column) and how many there are."""
    empty = frame.isna().to_numpy()
    if not empty.any():
        return
    row, col = (int(i) for i in np.argwhere(empty)[0])
    more = int(empty.sum()) - 1
    rest = f" (and {more:,} more missing cell{'s' * (more != 1)})" if more else ""
    raise DataError(
        f"{source}: row {row + 1} (line {row + 2}), column '{frame.columns[col]}' is empty{rest}; fill it, or "
        "leave missing cells out of the likelihood with --set data.missing=mask"
    )


def plain_value(v: Any) -> Any:
    """A level as a JSON value (numpy scalars become Python's)."""
    return v.item() if isinstance(v, np.generic) else v


@dataclass(frozen=True)
class Column:
    """One column of a table: its name, kind, levels (binary, categorical) and training mean and sd."""

    name: str
    kind: str
    levels: tuple[Any, ...] = ()
    mean: float = 0.0
    sd: float = 1.0

    @property
    def width(self) -> int:
        """Its slots in a row: one, or one per level of a categorical column."""
        return len(self.levels) if self.kind == "categorical" else 1


@dataclass(frozen=True)
class TableSchema:
    """A table's columns in order, and how each is encoded in a row's W slots."""

    columns: tuple[Column, ...]
    source: str = ""  # the file it was found in, for messages
    index: dict[str, dict[Any, int]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def width(self) -> int:
        """W, the slots of a row."""
        return sum(c.width for c in self.columns)

    def model_table(self) -> dict[str, Any]:
        """The layout the likelihood `mixed` is built with, `model.table`: each column's kind, width (its
        slots), mean and sd."""
        return {
            "columns": [{"kind": c.kind, "width": c.width, "mean": c.mean, "sd": c.sd} for c in self.columns]
        }

    def layout(self) -> TableLayout:
        """Each slot's kind, column, mean and sd (`vaelab.distributions.mixed.TableLayout`)."""
        return table_layout(self.model_table())

    def datum_shape(self) -> tuple[int, int, int]:
        """One row's shape (2, 1, W): values and observed mask over W slots."""
        return (2, 1, self.width)

    def to_dict(self) -> dict[str, Any]:
        """The JSON the run's config stores as `data.table`."""
        return {
            "columns": [
                {"name": c.name, "kind": c.kind, "levels": list(c.levels), "mean": c.mean, "sd": c.sd}
                for c in self.columns
            ]
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "") -> TableSchema:
        """Rebuild from `to_dict` output (a run's `data.table`).

        Args:
            d: {"columns": [{"name", "kind", "levels", "mean", "sd"}, ...]}.
            source: the file, for messages.
        """
        try:
            cols = tuple(
                Column(
                    str(c["name"]),
                    str(c["kind"]),
                    tuple(c.get("levels", ())),
                    float(c["mean"]),
                    float(c["sd"]),
                )
                for c in d["columns"]
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"data.table is not a table's encoding ({type(e).__name__}: {e})") from None
        for c in cols:
            COLUMN_KINDS.check(c.kind)
        return cls(cols, source)

    def _level_index(self, c: Column) -> dict[Any, int]:
        if c.name not in self.index:
            self.index[c.name] = {lv: i for i, lv in enumerate(c.levels)}
        return self.index[c.name]

    def encode(self, frame: Any, missing: str = "refuse") -> torch.Tensor:
        """The rows of `frame` (a pandas DataFrame with these columns) as float32 [N, 2, 1, W].

        Args:
            frame: the table.
            missing: refuse (a missing cell is a DataError naming its row and column) or mask.
        """
        MISSING.check(missing)
        absent = [c.name for c in self.columns if c.name not in frame.columns]
        if absent:
            raise DataError(
                f"{self.source}: no column {', '.join(map(repr, absent))}; it has: {column_list(frame)}"
            )
        n = len(frame)
        if missing == "refuse":
            _refuse_missing(frame[[c.name for c in self.columns]], self.source)
        values = np.zeros((n, self.width), dtype=np.float32)
        mask = np.zeros((n, self.width), dtype=np.float32)
        at = 0
        for c in self.columns:
            s = frame[c.name]
            seen = s.notna().to_numpy()
            mask[:, at : at + c.width] = seen[:, None]
            if c.kind == "continuous":
                num = column_numbers(s, c.name, self.source)
                values[seen, at] = (num[seen] - c.mean) / c.sd
            else:
                index = self._level_index(c)
                codes = (
                    s[seen].map(lambda v, index=index: index.get(plain_value(v), -1)).to_numpy(dtype=np.int64)
                )
                if (codes < 0).any():
                    row = int(np.flatnonzero(seen)[np.flatnonzero(codes < 0)[0]])
                    raise DataError(
                        f"{self.source}: row {row + 1}, column '{c.name}' holds {plain_value(s.iloc[row])!r}, not one of its "
                        f"{len(c.levels)} levels when the run trained ({show_levels(c.levels)})"
                    )
                if c.kind == "binary":
                    values[seen, at] = codes
                else:
                    values[np.flatnonzero(seen), at + codes] = 1.0
            at += c.width
        return torch.from_numpy(np.stack([values, mask], axis=1)[:, :, None, :].copy())

    def to_frame(self, rows: torch.Tensor) -> Any:
        """Encoded rows [N, 2, 1, W] (data, or a decoder's mean or samples) as a pandas DataFrame in the user's
        units and levels: a continuous column x * sd + mean, a binary or categorical one its most likely level
        (a probability above 0.5, the largest one-hot entry); a cell masked out is missing (NA).

        Args:
            rows: encoded rows.
        """
        import pandas as pd

        v = rows.detach().to("cpu", torch.float64)[:, 0, 0, :].numpy()
        seen = rows.detach().cpu()[:, 1, 0, :].numpy() > 0.5
        out: dict[str, Any] = {}
        at = 0
        for c in self.columns:
            block = v[:, at : at + c.width]
            if c.kind == "continuous":
                col = pd.Series(block[:, 0] * c.sd + c.mean)
            elif c.kind == "binary":
                col = pd.Series([c.levels[int(p > 0.5)] for p in block[:, 0]], dtype=object)
            else:
                col = pd.Series([c.levels[int(i)] for i in block.argmax(1)], dtype=object)
            out[c.name] = col.where(seen[:, at], None if c.kind != "continuous" else np.nan)
            at += c.width
        return pd.DataFrame(out)
