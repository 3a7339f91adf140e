"""`folder:PATH`: any folder of images (e.g. CelebA), read by the one picture rule of `vaelab.data.pictures`.

Images in class subfolders get the subfolder's index as label (ImageFolder's convention); a flat folder
has no labels. No split is published, so a fixed seeded 10% becomes the test split. PNG, JPEG, GIF, BMP and
WebP files are read (by content); other files are left out and counted in one line, hidden files and folders
(names starting with '.', e.g. macOS's `._x.png`) and vaelab run folders inside PATH are not looked at, and
links are followed only within PATH. An unreadable image stops the load, named, unless `data.skip_bad`
leaves such files out (counted in one line).

The path is stored absolute in the run's config (`DataConfig`); `data.data_dir` (`--data-dir`) re-points a
run whose folder moved: DIR/NAME (NAME the folder's own name) when it is a folder, else the stored path,
else DIR itself; a folder other than the stored one is named in one line.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vaelab.data.pictures import READ_FORMATS, OverPixelLimit, read_picture
from vaelab.data.sources import Splits, seeded_split
from vaelab.errors import DataError

_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".bmp": "BMP", ".webp": "WEBP"}
EXTENSIONS = tuple(e for e, fmt in _SUFFIXES.items() if fmt in READ_FORMATS)
KINDS = ", ".join(dict.fromkeys(f.replace("WEBP", "WebP") for f in READ_FORMATS))
# Refuse images whose header claims more pixels than this (a decompression bomb guard).
MAX_PIXELS = 64_000_000

_said: set[str] = set()


def note(message: str) -> None:
    """Say `message` on stderr, once per process (a folder is read again by each split and figure).

    Args:
        message: one line.
    """
    if message not in _said:
        _said.add(message)
        print(f"vaelab: note: {message}", file=sys.stderr)


@dataclass
class FolderScan:
    """What a walk of an image folder found: the images, and what it left out."""

    images: list[Path] = field(default_factory=list)
    others: list[Path] = field(default_factory=list)  # files that are not images vaelab reads
    runs: list[Path] = field(default_factory=list)  # vaelab run folders (their figures are not data)


def _is_run(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "checkpoints").is_dir()


def scan_folder(root: Path) -> FolderScan:
    """Every image below `root`, sorted, following links only where they resolve inside it.

    A linked folder seen before (a loop, or a second link to it) is not walked again; links that
    resolve outside `root` are refused, naming the first. Hidden files and folders are not looked at.

    Args:
        root: the image folder.
    """
    top = root.resolve()
    real_of = {str(root): top}  # each folder os.walk will visit -> where it really is
    seen = {top}
    scan = FolderScan()
    outside: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = real_of.pop(dirpath)
        kept = []
        for d in sorted(dirnames):
            link = os.path.join(dirpath, d)
            real = Path(os.path.realpath(link)) if os.path.islink(link) else here / d
            if d.startswith("."):
                continue
            if not real.is_relative_to(top):
                outside.append(Path(link))
            elif _is_run(real):
                scan.runs.append(Path(link))
            elif real not in seen:
                seen.add(real)
                real_of[link] = real
                kept.append(d)
        dirnames[:] = kept
        for f in sorted(filenames):
            path = Path(dirpath) / f
            if f.startswith("."):
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(top):
                outside.append(path)
            elif f.lower().endswith(EXTENSIONS):
                scan.images.append(path)
            else:
                scan.others.append(path)
    if outside:
        raise DataError(
            f"{root}: {len(outside)} link(s) lead outside the folder (first: {outside[0]} -> "
            f"{outside[0].resolve()}); links are followed only within it"
        )
    return scan


def list_images(root: Path) -> list[Path]:
    """Every image below `root`, sorted (see `scan_folder`).

    Args:
        root: the image folder.
    """
    return scan_folder(root).images


def read_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as uint8 [C, size, size] by the one picture rule; a DataError naming the file if not.

    Args:
        path: an image file.
        size: the side of the square it is resized to.
        channels: 1 (grey) or 3 (RGB).
    """
    try:
        return read_picture(path, channels, size, size, MAX_PIXELS)
    except OverPixelLimit as e:
        raise DataError(f"{path}: {e}") from None
    except DataError as e:  # unreadable, or a format not read (e.g. a TIFF named .png)
        raise DataError(f"{path}: not a readable image ({e})") from None


def find_folder(path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """Where the images of `folder:PATH` are, with `data_dir` re-pointing a folder that moved.

    With `data_dir`: DATA_DIR/NAME (NAME the folder's own name) when it is a folder, else `path`, else
    DATA_DIR itself; a folder other than `path` is named in one line. None found: one error naming each.

    Args:
        path: the folder as stored in the run's config.
        data_dir: --data-dir, or None.
    """
    if not str(path).strip():
        raise DataError(
            "--data folder: has an empty path (an unset shell variable?); give folder:PATH, e.g. folder:./images"
        )
    root = Path(path).expanduser()
    places = [root]
    if data_dir is not None and str(data_dir).strip():
        base = Path(data_dir).expanduser()
        places = [base / root.name, root, base]
    for place in places:
        if place.is_dir():
            if place != root:
                note(f"folder:{root}: reading the images in {place} (--data-dir)")
            return place
    if root.exists():
        raise DataError(f"folder:{root}: not a folder")
    if len(places) == 1:
        raise DataError(
            f"image folder not found: {root}; if it moved, pass --data-dir DIR with DIR/{root.name} or DIR "
            "its new place"
        )
    raise DataError(f"image folder not found: looked in {', '.join(map(str, dict.fromkeys(places)))}")


def _read_all(
    files: list[Path], root: Path, size: int, channels: int, skip_bad: bool
) -> tuple[list[Path], list[np.ndarray]]:
    """The files read and their pixels; unreadable ones stop the load, or with `skip_bad` are left out."""
    kept, arrays, bad = [], [], []
    for f in files:
        try:
            arrays.append(read_image(f, size, channels))
            kept.append(f)
        except DataError as e:
            bad.append(str(e))
    if bad and not skip_bad:
        n = len(bad)
        what = "it" if n == 1 else "them"
        raise DataError(
            f"{bad[0]}; {n} of {len(files)} image files in {root} cannot be read: fix or remove {what}, "
            "or leave unreadable files out with --set data.skip_bad=true"
        )
    if bad and len(arrays) >= 2:
        note(f"{root}: left out {len(bad)} of {len(files)} image files that cannot be read (first: {bad[0]})")
    return kept, arrays


def load_folder(
    path: str | os.PathLike,
    image_size: int = 64,
    channels: int = 1,
    skip_bad: bool = False,
    data_dir: str | os.PathLike | None = None,
) -> Splits:
    """Read a folder of images into memory as uint8 [N, C, S, S] with a fixed 90/10 split.

    Args:
        path: the folder (class subfolders give labels).
        image_size: S, the side every image is resized to.
        channels: 1 (grey) or 3 (RGB).
        skip_bad: leave unreadable image files out (counted in one line) instead of stopping at them.
        data_dir: where the folder is now, if it moved (see `find_folder`).
    """
    root = find_folder(path, data_dir)
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    scan = scan_folder(root)
    kept, images = _read_all(scan.images, root, image_size, channels, skip_bad)
    if len(images) < 2:
        others = f" ({len(scan.others)} other files left out, first: {scan.others[0]})" if scan.others else ""
        raise DataError(f"{root}: found {len(images)} readable images ({KINDS}), need at least 2{others}")
    if scan.others:  # said once the load succeeded: a failing load is one line, its error
        note(
            f"{root}: left out {len(scan.others)} file(s) that are not {KINDS} images "
            f"(first: {scan.others[0]})"
        )
    if scan.runs:
        note(f"{root}: left out {len(scan.runs)} vaelab run folder(s) (first: {scan.runs[0]})")
    tensor = torch.from_numpy(np.stack(images))
    classes = sorted({f.parent for f in kept})
    labels = None
    if len(classes) > 1:
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index[f.parent] for f in kept], dtype=torch.int64)
    n_test = max(1, len(kept) // 10)
    return seeded_split(tensor, labels, n_test, f"folder:{root.name}")
