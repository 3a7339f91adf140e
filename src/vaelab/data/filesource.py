"""Where a data set made of files is looked for, and how it is verified and fetched.

Search order (DESIGN.md): an explicit data dir, $VAELAB_DATA, the user cache (~/.cache/vaelab), well-known
system places (Debian's /usr/share/datasets/...), then a download from the canonical mirrors with checksum
verification. Offline and not found: one error naming every place looked and how to supply the files. A file
whose checksum is not the published one is a ChecksumMismatch, found on disk or served by a mirror.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.data.download import content_sha256, download
from vaelab.errors import ChecksumMismatch, DataError

if TYPE_CHECKING:
    from vaelab.data.sources import Splits


def cache_dir() -> Path:
    """The user cache: $XDG_CACHE_HOME/vaelab or ~/.cache/vaelab."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vaelab"


# $VAELAB_OFFLINE's words (any case, spaces ignored): True switches downloads off.
OFFLINE_WORDS = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("", "0", "false", "no", "off"), False),
}


def offline() -> bool:
    """True when downloads are switched off: $VAELAB_OFFLINE is 1, true, yes or on (any case); unset, empty,
    0, false, no or off leave them on; anything else is a DataError naming the value."""
    raw = os.environ.get("VAELAB_OFFLINE", "")
    word = raw.strip().lower()
    if word not in OFFLINE_WORDS:
        raise DataError(
            f"VAELAB_OFFLINE={raw!r}: expected 1, true, yes or on (no downloads), or 0, false, no, off or "
            "empty (downloads allowed)"
        )
    return OFFLINE_WORDS[word]


@dataclass(frozen=True)
class FileSpec:
    """One file of a source: its name and the SHA-256 of its uncompressed content (None: not published);
    `check` raises DataError when a file without a checksum does not hold what it should."""

    name: str
    sha256: str | None
    check: Callable[[Path], object] | None = None


@dataclass(frozen=True)
class FileSource:
    """A source made of files found on disk or downloaded; `parse` turns the found files into Splits."""

    name: str
    files: tuple[FileSpec, ...]
    mirrors: tuple[str, ...]
    parse: Callable[[dict[str, Path]], Splits]
    system_dirs: tuple[str, ...] = ()
    description: str = ""
    verify: bool = True

    def candidate_dirs(self, data_dir: str | os.PathLike | None) -> list[tuple[str, Path | None]]:
        """(label, folder) pairs in search order; a folder of None means that place is not set.

        Args:
            data_dir: the folder given with --data-dir, searched first (with and without the source's name).
        """
        places: list[tuple[str, Path | None]] = []
        for label, base in (
            ("--data-dir", data_dir),
            ("$VAELAB_DATA", os.environ.get("VAELAB_DATA") or None),
        ):
            if base is None:
                places.append((label, None))
            else:
                places += [(label, Path(base) / self.name), (label, Path(base))]
        places.append(("cache", cache_dir() / self.name))
        places += [("system", Path(d)) for d in self.system_dirs]
        return places

    def _find_in(self, folder: Path) -> dict[str, Path] | None:
        found = {}
        for spec in self.files:
            stem = spec.name.removesuffix(".gz")
            hit = next((folder / n for n in (stem + ".gz", stem) if (folder / n).is_file()), None)
            if hit is None:
                return None
            found[spec.name] = hit
        return found

    def _check(self, found: dict[str, Path]) -> None:
        if not self.verify:
            return
        for spec in self.files:
            if spec.sha256 is not None:
                got = content_sha256(found[spec.name])
                if got != spec.sha256:
                    raise ChecksumMismatch(
                        f"{found[spec.name]} is not {self.name}'s {spec.name}: content sha256 {got}, "
                        f"expected {spec.sha256}"
                    )

    def locate(
        self, data_dir: str | os.PathLike | None = None, allow_download: bool = True
    ) -> dict[str, Path]:
        """Find every file of the source (downloading into the cache if needed); one clear error if not:
        ChecksumMismatch for a file that is not the published one, DataError naming every place looked.

        Args:
            data_dir: the folder given with --data-dir, searched first.
            allow_download: download into the cache when the files are nowhere on disk.
        """
        looked = []
        for label, folder in self.candidate_dirs(data_dir):
            if folder is None:
                looked.append(f"{label} (not set)")
                continue
            looked.append(str(folder))
            found = self._find_in(folder)
            if found is not None:
                self._check(found)
                return found
        if not allow_download or offline() or not self.mirrors:
            why = "downloads are off ($VAELAB_OFFLINE)" if offline() else "no download was tried"
            raise DataError(self._not_found(looked, why))
        target = cache_dir() / self.name
        try:
            for spec in self.files:
                dest = target / spec.name
                if not dest.is_file():
                    download([m + spec.name for m in self.mirrors], dest, spec.sha256, check=spec.check)
        except ChecksumMismatch:  # a mirror serves another file: say so, not "not found"
            raise
        except DataError as e:
            raise DataError(self._not_found(looked, str(e))) from None
        found = self._find_in(target)
        assert found is not None
        return found

    def _not_found(self, looked: list[str], why: str) -> str:
        names = ", ".join(s.name for s in self.files)
        return (
            f"data set '{self.name}' not found; looked in: {'; '.join(looked)}; {why}. "
            f"Put {names} in one of these folders (or pass --data-dir DIR, or set VAELAB_DATA)"
        )

    def load(self, data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> Splits:
        """Locate, verify and parse the source into its published train/test split.

        Args:
            data_dir: the folder given with --data-dir, searched first.
            allow_download: download into the cache when the files are nowhere on disk.
        """
        return self.parse(self.locate(data_dir, allow_download))
