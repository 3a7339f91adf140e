"""`csv:FILE` and `parquet:FILE`: a table's rows as data, each column continuous, binary or categorical.

Each column's kind is inferred, and `data.columns` (`--set data.columns.age=continuous`) overrides it or leaves
the column out (`drop`): numbers are continuous, any column with exactly two values is binary, text is
categorical over its levels (at most `MAX_LEVELS`: a text column with more, such as names or free text, is
refused in one line, to be dropped or encoded). A text column whose cells are numbers but a few (at most
`STRAY_CELLS` or 1%) is numbers with typos, refused naming the first cell that is not a number; a continuous
cell that is not finite (inf) is refused with its row and column. A continuous column is standardised with
the mean and sd of its training rows; a binary one is 0/1 (its two values sorted); a categorical one is one-hot
over its levels (sorted). The rows are held as [N, 2, 1, W] float32, values and observed mask
(`vaelab.distributions.mixed`, whose likelihood `mixed` models them with every normalising constant kept).

Missing cells (empty, NA, ...) are refused with their row and column, or with `data.missing=mask` left out
of the likelihood (the encoder sees a 0 and the mask). The test split is a fixed seeded 10% of the rows (the
rule of `folder:` and arrays). Training stores what it found (kinds, levels, means, sds) in the run's
config as `data.table`; evaluation and resume read the file with that encoding, and `TableSchema.to_frame`
maps the model's rows back to the user's units and levels without the file (`table_schema(run)`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.data.arrays import find_file
from vaelab.data.sources import ImageSet, Splits, split_order
from vaelab.data.table_schema import (
    COLUMN_KINDS,
    MAX_CHOSEN_LEVELS,
    MAX_LEVELS,
    MISSING,
    Column,
    TableSchema,
    column_list,
    column_numbers,
    mostly_numbers,
    plain_value,
    show_levels,
)
from vaelab.distributions.mixed import KIND_NAMES
from vaelab.errors import DataError


def infer_schema(frame: Any, kinds: dict[str, str], train_rows: np.ndarray, source: str) -> TableSchema:
    """Each column's kind (inferred, or as `kinds` says), levels, and training mean and sd.

    Args:
        frame: the whole table (pandas DataFrame).
        kinds: column -> continuous | binary | categorical | drop (`data.columns`).
        train_rows: positions of the training rows (their statistics standardise continuous columns).
        source: the file, for messages.
    """
    import pandas as pd

    names = [str(c) for c in frame.columns]
    unknown = sorted(set(kinds) - set(names))
    if unknown:
        raise DataError(
            f"data.columns names {', '.join(map(repr, unknown))}; {source} has: {column_list(frame)}"
        )
    for kind in kinds.values():
        COLUMN_KINDS.check(kind)
    cols = []
    for name in names:
        chosen = kinds.get(name)
        if chosen == "drop":
            continue
        s = frame[name]
        seen = s.dropna()
        if seen.empty:
            raise DataError(
                f"{source}: column '{name}' has no values; drop it: --set data.columns.{name}=drop"
            )
        numeric = pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)
        if chosen is None and (numeric or mostly_numbers(seen)):
            column_numbers(
                s, name, source
            )  # names the first cell that is not a number, or not finite (e.g. {0, inf})
        levels = sorted((plain_value(v) for v in seen.unique()), key=lambda v: (str(type(v)), v))
        n = len(levels)
        kind = chosen or ("binary" if n == 2 else "continuous" if numeric else "categorical")
        if n == 1:
            raise DataError(
                f"{source}: column '{name}' holds one value ({levels[0]!r}) in every row: it tells nothing; drop "
                f"it: --set data.columns.{name}=drop"
            )
        if kind == "binary" and n != 2:
            raise DataError(
                f"{source}: column '{name}' set binary has {n} values ({show_levels(levels)}), not 2"
            )
        if kind == "categorical":
            cap = MAX_CHOSEN_LEVELS if chosen else MAX_LEVELS
            if n > cap:
                what = "text" if not numeric else "numbers"
                raise DataError(
                    f"{source}: column '{name}' is {what} with {n:,} distinct values, more than the {cap} levels "
                    f"a categorical column may have (names, ids or free text?); leave it out with "
                    f"--set data.columns.{name}=drop"
                    + ("" if chosen or not numeric else f", or --set data.columns.{name}=continuous")
                )
            cols.append(Column(name, kind, tuple(levels)))
        elif kind == "binary":
            cols.append(Column(name, kind, tuple(levels)))
        else:
            num = column_numbers(s, name, source)[train_rows]
            num = num[~np.isnan(num)]  # cells missing (masked); an infinite one was refused
            with np.errstate(over="ignore"):
                sd = float(num.std()) if len(num) else 0.0
            if not np.isfinite(sd):
                raise DataError(
                    f"{source}: column '{name}' spans values too large to standardise (its sd overflows float64, "
                    f"largest {np.abs(num).max():g}): rescale it, or drop it: --set data.columns.{name}=drop"
                )
            if len(num) < 2 or sd == 0.0:
                raise DataError(
                    f"{source}: column '{name}' takes one value over the training rows: it cannot be "
                    f"standardised; drop it: --set data.columns.{name}=drop"
                )
            cols.append(Column(name, kind, (), float(num.mean()), sd))
    if not cols:
        raise DataError(f"{source}: no columns left to model (data.columns drops them all)")
    return TableSchema(tuple(cols), source)


def read_frame(kind: str, file: Path) -> Any:
    """The table in `file` as a pandas DataFrame (csv or parquet), or one line saying why not.

    Args:
        kind: csv or parquet.
        file: the file.
    """
    import pandas as pd

    where = f"{kind}:{file}"
    if kind == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise DataError(f"{where}: reading Parquet needs pyarrow (pip install vaelab[parquet])") from None
        try:
            return pd.read_parquet(file)
        except Exception as e:  # pyarrow raises many types on a malformed file
            raise DataError(f"{where}: not a readable Parquet file ({type(e).__name__}: {e})") from None
    try:
        return pd.read_csv(file)
    except pd.errors.EmptyDataError:
        raise DataError(f"{where}: empty, no header and no rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{where}: not a readable CSV file ({' '.join(str(e).split())})") from None


def table_splits(
    kind: str,
    path: str,
    data_dir: str | os.PathLike | None = None,
    kinds: dict[str, str] | None = None,
    missing: str = "refuse",
    saved: dict[str, Any] | None = None,
) -> Splits:
    """The train and test rows of `csv:FILE` or `parquet:FILE` (module docstring).

    Args:
        kind: csv or parquet.
        path: the file.
        data_dir: where the file is now, if it moved.
        kinds: `data.columns`, column -> kind.
        missing: `data.missing`, refuse or mask.
        saved: `data.table`, the encoding a run trained with (its kinds, levels and statistics win).
    """
    MISSING.check(missing)
    file = find_file(path, data_dir, kind)
    frame = read_frame(kind, file)
    source = f"{kind}:{file}"
    if len(frame) < 2:
        raise DataError(f"{source}: {len(frame)} row(s); need at least 2 (one for the test split)")
    train, test = split_order(len(frame), None, max(1, len(frame) // 10))
    if saved:
        schema = TableSchema.from_dict(saved, source)
    else:
        schema = infer_schema(frame, dict(kinds or {}), train.numpy(), source)
    rows = schema.encode(frame, missing)
    full = ImageSet(rows, None, f"{kind}:{file.name}", schema)
    return Splits(
        full.subset(train, f"{kind}:{file.name}/train"), full.subset(test, f"{kind}:{file.name}/test")
    )


def table_schema(run: str | os.PathLike | dict[str, Any]) -> TableSchema:
    """The encoding a table run trained with (its config's `data.table`), to map rows back to the user's
    units with `to_frame`, without the file.

    Args:
        run: a run folder, its config.json, or a config dict (`Config.to_dict()`).
    """
    if isinstance(run, dict):
        cfg = run
    else:
        p = Path(run)
        p = p / "config.json" if p.is_dir() else p
        try:
            cfg = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{p}: cannot read the run's config ({e})") from None
    table = cfg.get("data", {}).get("table")
    if not table:
        raise DataError(
            f"{run if not isinstance(run, dict) else 'the config'}: not a table run (no data.table)"
        )
    return TableSchema.from_dict(table, str(cfg["data"].get("name", "")))


def impute(
    model: Any, rows: torch.Tensor, num_samples: int = 100, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rows with each missing cell filled by its expected value under p(x_miss | x_obs), estimated by
    self-normalised importance sampling with q(z | x_obs) (Mattei & Frellsen 2019): sum_k w_k E[x | z_k], w
    proportional to p(x_obs, z_k) / q(z_k | x_obs). Observed cells stay; filled rows are all observed.

    Args:
        model: a one-latent-layer model trained on the table (encode, decode, log_importance_weights).
        rows: encoded rows [B, 2, 1, W] with their observed mask.
        num_samples: K, the draws of z per row.
        generator: the random stream of the draws.
    """
    from vaelab.distributions.sampling import rsample

    with torch.no_grad():
        q = model.encode(rows)
        z = rsample(q, (num_samples,), generator)
        p = model.decode(z)
        log_w = p.log_prob(rows) + model.prior().log_prob(z) - q.log_prob(z)  # [K, B]
        w = torch.softmax(log_w, dim=0)
        expected = (w[..., None, None, None] * p.mean).sum(0)  # [B, 2, 1, W]
    seen = rows[:, 1:2] > 0.5
    out = torch.where(seen, rows, expected)
    out[:, 1] = 1.0
    return out


__all__ = [
    "COLUMN_KINDS",
    "KIND_NAMES",
    "MAX_LEVELS",
    "MISSING",
    "Column",
    "TableSchema",
    "impute",
    "infer_schema",
    "read_frame",
    "table_schema",
    "table_splits",
]
