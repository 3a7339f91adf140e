"""What the `vaelab` process sets up before a command and cleans up after one: a usable matplotlib config
folder, and a quiet end when stdout is closed early.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path


def _could_write(folder: Path) -> bool:
    """Whether `folder` is a writable folder, or could be made one (nothing is created to find out)."""
    for p in (folder, *folder.parents):
        if p.exists():
            return p.is_dir() and os.access(p, os.W_OK | os.X_OK)
    return False


def matplotlib_folders(environ: MutableMapping[str, str]) -> list[Path]:
    """The folders matplotlib keeps its config and font cache in when MPLCONFIGDIR is not set.

    Args:
        environ: the environment (os.environ).
    """
    home = environ.get("HOME") or str(Path.home())
    if sys.platform.startswith(("linux", "freebsd")):
        config = environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        cache = environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
        return [Path(config, "matplotlib"), Path(cache, "matplotlib")]
    return [Path(home, ".matplotlib")]


def matplotlib_config_dir(environ: MutableMapping[str, str]) -> str | None:
    """Point MPLCONFIGDIR at a temporary folder (removed at exit) when matplotlib's own would be unusable.

    With $HOME a plain file or read-only, matplotlib falls back to a temporary folder itself, but warns about it
    in two lines on every command. Call this before matplotlib is imported. A MPLCONFIGDIR the user set is left
    alone (matplotlib's warning about it is then useful).

    Args:
        environ: the environment to read and change (os.environ).

    Returns:
        The temporary folder, or None when matplotlib's own folders are fine (nothing was changed).
    """
    if environ.get("MPLCONFIGDIR") or sys.platform == "win32":
        return None
    try:
        folders = matplotlib_folders(environ)
    except RuntimeError:  # no home directory at all
        folders = []
    if folders and all(_could_write(f.resolve()) for f in folders):
        return None
    tmp = tempfile.mkdtemp(prefix="vaelab-matplotlib-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    environ["MPLCONFIGDIR"] = tmp
    return tmp


def silence_stdout() -> None:
    """Send what stdout still holds to os.devnull: its reader has gone (`vaelab ... | head -1`).

    Python's recipe for a closed pipe: without it, the interpreter's last flush of stdout raises again, as an
    "Exception ignored" message on stderr.
    """
    with contextlib.suppress(OSError, ValueError):  # stdout is no file (captured by a test): no pipe to flush
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)


def say(line: str) -> None:
    """Print one line on stderr, unless stderr itself is gone.

    Args:
        line: the line.
    """
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)
