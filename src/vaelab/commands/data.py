"""`vaelab data list | get | info`: the named data sets, where they are, and fetching them.

`data list` reads the built-in table (`vaelab.commands.catalog`) and imports no torch; `get` and `info` import
the data layer when they run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.commands.catalog import DATA_SETS
from vaelab.commands.common import add_shared_options

if TYPE_CHECKING:
    from vaelab.data.sources import FileSource, FileSpec

FOLDER_LINE = "any folder of PNG/JPEG images, centre-cropped and resized (--image-size, --channels)"


def cmd_list(args: argparse.Namespace) -> int:
    """`vaelab data list`: every named data set, one line each.

    Args:
        args: the parsed flags (none are read).
    """
    for name, src in DATA_SETS.items():
        print(f"{name:<14} {src.description}")
    print(f"{'folder:PATH':<14} {FOLDER_LINE}")
    return 0


def _how_checked(src: FileSource, spec: FileSpec, path: Path) -> str:
    """What was checked of a found file: its checksum, else its content (DataError if that is wrong)."""
    if src.verify and spec.sha256 is not None:
        return "checksum verified"
    if spec.check is not None:
        spec.check(path)
        return f"no published checksum; its content was read and checked as {src.name} data"
    return "not verified: no published checksum"


def cmd_get(args: argparse.Namespace) -> int:
    """`vaelab data get NAME`: find (or download and verify) a data set and say what was checked.

    Args:
        args: the parsed flags: name, data_dir, no_download, quiet.
    """
    from vaelab.data.sources import FileSource, get_source

    src = get_source(args.name)
    if isinstance(src, FileSource):
        # --quiet: the download's progress bar (its only output on stderr; errors are raised) goes nowhere
        hush = contextlib.redirect_stderr(io.StringIO()) if args.quiet else contextlib.nullcontext()
        with hush:
            found = src.locate(args.data_dir, allow_download=not args.no_download)
        for spec in src.files:
            path = found[spec.name]
            print(f"found {path} ({_how_checked(src, spec, path)})")
    else:
        src.load()
        print(f"{args.name} is shipped inside an installed package: nothing to fetch")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """`vaelab data info NAME`: the splits' sizes, shapes, mean intensity (in the data's own scale: of 255 for
    8-bit levels, of 1 for floats in [0, 1]) and classes; a table's rows and columns.

    Args:
        args: the parsed flags: name, data_dir, no_download.
    """
    from vaelab.config import Config, DataConfig
    from vaelab.data import load_data
    from vaelab.data.kinds import table_defaults

    data = DataConfig(
        name=args.name, data_dir=args.data_dir, download=not args.no_download, valid_fraction=0.0
    )
    # the defaults training gives the data (a table's binarize none), nothing set by the user
    cfg = table_defaults(Config(data=data), explicit=()).data
    splits = load_data(cfg)
    for split, s in (("train", splits.train), ("test", splits.test)):
        if s.table is not None:
            cols = len(s.table.columns)
            print(
                f"{split:<5} {len(s):>6} rows of {cols} column{'s' * (cols != 1)} ({s.shape[2]} slots encoded)"
            )
            continue
        labels = "no labels" if s.labels is None else f"{int(s.labels.max()) + 1} classes"
        mean = float(s.images.float().mean())
        scale = "1" if s.images.dtype.is_floating_point else "255"
        print(
            f"{split:<5} {len(s):>6} images of {tuple(s.shape)}, mean intensity {mean:.3f} of {scale}, {labels}"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `vaelab data list | get | info`.

    Args:
        sub: the `vaelab` command's subparsers.
    """
    p = sub.add_parser("data", help="list, fetch and inspect the named data sets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    q = dsub.add_parser("list", help="the named data sets")
    add_shared_options(q, "quiet")
    q.set_defaults(func=cmd_list, uses_torch=False)
    for name, func, text in (
        ("get", cmd_get, "find (or download and verify) a data set"),
        ("info", cmd_info, "sizes and shapes"),
    ):
        q = dsub.add_parser(name, help=text)
        q.add_argument("name", metavar="NAME")
        q.add_argument("--data-dir", default=None, help="searched first")
        q.add_argument("--no-download", action="store_true", help="only look on disk")
        add_shared_options(q, "quiet")
        q.set_defaults(func=func)
