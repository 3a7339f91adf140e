"""`vaelab data list | get | info`: the named data sets, where they are, and fetching them."""

from __future__ import annotations

import argparse
from pathlib import Path

from vaelab.config import DataConfig
from vaelab.data import load_data
from vaelab.data.sources import SOURCES, FileSource, FileSpec, get_source


def cmd_list(args: argparse.Namespace) -> int:
    """`vaelab data list`: every named data set, one line each.

    Args:
        args: the parsed flags (none are read).
    """
    for name, src in SOURCES.items():
        print(f"{name:<14} {src.description}")
    print(
        f"{'folder:PATH':<14} any folder of PNG/JPEG images, centre-cropped and resized (--image-size, --channels)"
    )
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
        args: the parsed flags: name, data_dir, no_download.
    """
    src = get_source(args.name)
    if isinstance(src, FileSource):
        found = src.locate(args.data_dir, allow_download=not args.no_download)
        for spec in src.files:
            path = found[spec.name]
            print(f"found {path} ({_how_checked(src, spec, path)})")
    else:
        src.load()
        print(f"{args.name} is shipped inside an installed package: nothing to fetch")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """`vaelab data info NAME`: the splits' sizes, shapes, mean intensity and classes.

    Args:
        args: the parsed flags: name, data_dir, no_download.
    """
    cfg = DataConfig(
        name=args.name, data_dir=args.data_dir, download=not args.no_download, valid_fraction=0.0
    )
    splits = load_data(cfg)
    for split, s in (("train", splits.train), ("test", splits.test)):
        labels = "no labels" if s.labels is None else f"{int(s.labels.max()) + 1} classes"
        mean = float(s.images.float().mean())
        print(
            f"{split:<5} {len(s):>6} images of {tuple(s.shape)}, mean intensity {mean:.3f} of 255, {labels}"
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
    q.set_defaults(func=cmd_list)
    for name, func, text in (
        ("get", cmd_get, "find (or download and verify) a data set"),
        ("info", cmd_info, "sizes and shapes"),
    ):
        q = dsub.add_parser(name, help=text)
        q.add_argument("name", metavar="NAME")
        q.add_argument("--data-dir", default=None, help="searched first")
        q.add_argument("--no-download", action="store_true", help="only look on disk")
        q.set_defaults(func=func)
