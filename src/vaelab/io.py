"""Atomic file output: write to a temporary name in the same folder, fsync, rename.

A crash (or kill -9) at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from vaelab.errors import ConfigError, VaelabError


def _file_mode() -> int:
    """The mode open() would give a new file under this process's umask (mkstemp alone gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create a folder (and parents); a clear error if it cannot be created or written.

    Args:
        path: the folder.
    """
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if isinstance(e, FileExistsError | NotADirectoryError):
            check_can_create(p)  # a file in the way: named, not "File exists"
        raise VaelabError(f"cannot create folder {p}: {e.strerror or e}") from None
    if not os.access(p, os.W_OK):
        raise VaelabError(f"folder {p} is not writable")
    return p


def check_can_create(path: str | os.PathLike) -> Path:
    """The error `ensure_dir(path)` would raise, found without creating anything, so that a command failing
    later (bad data, a bad config) leaves no empty folder behind.

    Args:
        path: the folder to be created later; an empty path (an unset shell variable) is refused, since it
            would mean the current folder.
    """
    if not str(path).strip():
        raise ConfigError("the output folder is empty (an unset shell variable?): give --out FOLDER")
    p = Path(path)
    q = p
    while not q.exists() and q != q.parent:
        q = q.parent
    if not q.is_dir():
        raise VaelabError(f"cannot create folder {p}: {q} is not a folder")
    if not os.access(q, os.W_OK | os.X_OK):
        raise VaelabError(
            f"folder {p} is not writable" if q == p else f"cannot create folder {p}: {q} is not writable"
        )
    return p


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success it replaces `path`, on failure it vanishes.

    Args:
        path: the file to write.
        mode: the open() mode of the temporary file ("wb" or "w").
    """
    target = Path(path)
    ensure_dir(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise VaelabError(f"cannot write {target}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise VaelabError(f"cannot write {target}: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (`.<name>.<random>.tmp`) that a killed writer left below `folder`.

    Call it only where no other process writes into `folder` at the same time (a run's main process).

    Args:
        folder: searched recursively.
    """
    removed = []
    for p in Path(folder).rglob(".*.tmp"):
        if p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to `path` atomically.

    Args:
        path: the file to write.
        data: its whole content.
    """
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text (UTF-8) to `path` atomically.

    Args:
        path: the file to write.
        text: its whole content.
    """
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """A strict-JSON copy: numpy scalars and arrays to Python, nan and inf to None (JSON has no NaN: a bare
    `NaN` token breaks JavaScript's JSON.parse and other strict readers).

    Args:
        obj: dicts, lists, tuples, arrays and numbers, nested.
    """
    import numpy as np

    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write an object as indented strict JSON atomically (non-finite numbers become null).

    Args:
        path: the file to write.
        obj: what `json_safe` can make strict JSON of.
    """
    return atomic_write_text(
        path, json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"
    )


def atomic_save(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(buffer)` (torch.save, savefig, PIL's save) into memory, then write the bytes atomically.

    Rendering first keeps every disk failure (full disk, read-only folder) a plain OSError of our own write,
    instead of whatever the library wraps it in, so it becomes one clear line and no file is touched.

    Args:
        path: the file to write.
        write: writes the whole content into the buffer it is given.
    """
    buf = io.BytesIO()
    write(buf)
    return atomic_write_bytes(path, buf.getvalue())
