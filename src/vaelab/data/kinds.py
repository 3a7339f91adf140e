"""The data kinds named KIND:PATH besides `folder:`: arrays (`npz:FILE[:KEY]`, `npy:FILE`) and tables
(`csv:FILE`, `parquet:FILE`), one loader each in `KINDS` (`vaelab.data.load_source` reads `folder:` itself).

A kind that is not a table refuses the table settings (`data.columns`, `data.missing`, `data.table`), and a
table refuses binarization: its rows are values, not intensities. So a table brings its own defaults
(`table_defaults`): `data.binarize` none and `model.likelihood` mixed, unless set; a conflicting choice is one
line. Arrays bring none: floats in [0, 1] may be grey images a Bernoulli VAE binarizes (torchvision's
`ToTensor()` MNIST), so binarization follows the flags as for any images, and a likelihood of grey levels
chosen without `--binarize none` gets one warning line (`binarized_grey_warning`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from vaelab.config import Config, DataConfig, ModelConfig, split_source
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
                f"{kind}:{path} is a table: its columns are values, not grey levels to binarize; leave "
                f"--binarize out (a table's default is none; got {cfg.binarize})"
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


def is_table(name: str) -> bool:
    """Whether the data name `name` is a table (csv:FILE, parquet:FILE)."""
    return split_source(name)[0] in TABLE_KINDS


def table_defaults(cfg: Config, explicit: Collection[str] | None = None, table: bool | None = None) -> Config:
    """`cfg` with a table's defaults, `data.binarize` none and `model.likelihood` mixed, where not set; a
    DataError (one line) for a conflicting choice. Not a table: `cfg` unchanged.

    Args:
        cfg: the run's config.
        explicit: the dotted keys the user set (flags, --set, --config file); None (from Python): a key set
            is one whose value differs from the default Config's.
        table: whether the data is a table (default: `cfg.data.name` says, csv: or parquet:).
    """
    if not (is_table(cfg.data.name) if table is None else table):
        return cfg
    chosen = {
        "data.binarize": (cfg.data.binarize, DataConfig().binarize, "none", "--binarize"),
        "model.likelihood": (cfg.model.likelihood, ModelConfig().likelihood, "mixed", "--likelihood"),
    }
    changes = {}
    for key, (value, default, wanted, flag) in chosen.items():
        if value == wanted:
            continue
        asked = key in explicit if explicit is not None else value != default
        if asked:
            what = (
                "its rows are modelled column by column by the likelihood mixed"
                if key == "model.likelihood"
                else "its columns are values, not grey levels to binarize"
            )
            raise DataError(
                f"{cfg.data.name} is a table: {what}; leave {flag} ({key}) out, its default for a table is "
                f"{wanted} (got {value})"
            )
        changes[key] = wanted
    return cfg.replace(**changes) if changes else cfg


def binarized_grey_warning(cfg: Config, explicit: Collection[str]) -> str | None:
    """One warning line when a likelihood of grey levels (gaussian, continuous-bernoulli, ...), chosen by the
    user, would train on binarized pixels because `--binarize none` is absent; else None.

    Args:
        cfg: the run's config.
        explicit: the dotted keys the user set (a likelihood a model brings, the GAN's, is not warned of).
    """
    from vaelab.distributions.likelihoods import LIKELIHOODS

    lik, binarize = cfg.model.likelihood, cfg.data.binarize
    if is_table(cfg.data.name) or binarize == "none" or "model.likelihood" not in explicit:
        return None
    if lik not in LIKELIHOODS or lik == "mixed" or LIKELIHOODS.lookup(lik).binary_data:
        return None
    return (
        f"warning: likelihood '{lik}' models grey levels, but --binarize {binarize} turns the pixels into 0/1 "
        "first: the model trains and is scored on binarized pixels; pass --binarize none for grey levels"
    )
