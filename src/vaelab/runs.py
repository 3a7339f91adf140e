"""The run folder: where a run keeps its config, checkpoints, metrics, evaluation, figures and report.

One training at a time writes a run folder: `hold_lock(run)` takes `RUN/.lock` (an flock held for as long as
the training runs, the file naming its pid and host), refuses a second training in one line, and takes over a
lock its holder left behind when it was killed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaelab.errors import ConfigError, VaelabError
from vaelab.io import atomic_write_text, check_can_create, ensure_dir, json_safe


@dataclass(frozen=True)
class RunDir:
    """Paths inside `runs/<name>/` (DESIGN.md)."""

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike) -> RunDir:
        """The run folder at `path` (not created).

        Args:
            path: the run's folder (an empty path is refused: it would be the current folder).
        """
        if not str(path).strip():
            raise ConfigError("the run folder is an empty path: name a folder, e.g. runs/mine")
        return cls(Path(path))

    @property
    def config(self) -> Path:
        """config.json: the run's config (editable; the checkpoints hold their own)."""
        return self.root / "config.json"

    @property
    def lock(self) -> Path:
        """.lock: held by the one training that writes this folder (`hold_lock`)."""
        return self.root / ".lock"

    @property
    def checkpoints(self) -> Path:
        """The checkpoints' folder."""
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        """The checkpoint of the last epoch."""
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        """The checkpoint with the best validation score."""
        return self.checkpoints / "best.pt"

    @property
    def metrics(self) -> Path:
        """metrics.jsonl: one JSON record per epoch."""
        return self.root / "metrics.jsonl"

    @property
    def eval(self) -> Path:
        """eval.json: what `vaelab eval` measured."""
        return self.root / "eval.json"

    @property
    def figures(self) -> Path:
        """The figures' folder."""
        return self.root / "figures"

    @property
    def report(self) -> Path:
        """report.html: the run's self-contained page."""
        return self.root / "report.html"

    def clear_outputs(self, keep_mlflow: bool = False) -> None:
        """Remove what a previous run left (checkpoints, metrics, eval.json, report, figures, TensorBoard's tb/
        and the MLflow store), so that a run started again over it (--overwrite) shows nothing of the old model.

        Args:
            keep_mlflow: leave the MLflow files: the new run logs to MLflow, whose logger deletes the old MLflow
                run itself (it may live in a store outside this folder, named by mlflow.json).
        """
        import shutil

        mlflow = () if keep_mlflow else (self.mlflow_db, self.mlflow_run)
        for f in (self.best, self.last, self.metrics, self.eval, self.report, *mlflow):
            f.unlink(missing_ok=True)
        for d in (self.figures, self.tb, *(() if keep_mlflow else (self.mlflow_artifacts,))):
            shutil.rmtree(d, ignore_errors=True)

    def entries(self) -> dict[Path, tuple[int, int]]:
        """The folder's entries and checkpoints/'s now, each with its inode and modification time: what
        `discard_unstarted` needs to tell what a start wrote (or replaced, over a cleared run) from what it found."""
        found = {}
        for folder in (self.root, self.checkpoints):
            try:
                listing = list(folder.iterdir())
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in listing:
                with contextlib.suppress(FileNotFoundError):  # another writer removed it meanwhile
                    st = entry.lstat()
                    found[entry] = (st.st_ino, st.st_mtime_ns)
        return found

    def discard_unstarted(self, before: dict[Path, tuple[int, int]]) -> None:
        """After a fresh start failed with no checkpoint written: remove what it wrote of a run's own files
        (config.json, an empty metrics.jsonl, checkpoints/, data.npz or data.csv, tb/, an MLflow store it made).
        Where it started over a trained run (--overwrite, whose outputs it cleared), also the own files it
        replaced; otherwise what the folder held stays as it is, as does everything not a run's own, and a
        pre-existing mlflow.json (the next start deletes the MLflow run it names). Errors in removing are
        ignored: the start's own error is the one to report.

        Args:
            before: the folder's `entries` when the start began.
        """
        import shutil

        from vaelab.data.python import DATA_FILE, STAGED, TABLE_FILE

        shutil.rmtree(self.root / STAGED, ignore_errors=True)  # data waiting for an old run to be cleared
        if self.last.is_file():  # an epoch finished, or the failure came before an old run was cleared
            return
        cleared = self.last in before
        for entry in (self.config, self.metrics, self.root / DATA_FILE, self.root / TABLE_FILE):
            self._discard_file(entry, before, cleared)
        if self.checkpoints.is_dir() and not self.checkpoints.is_symlink():
            for entry in list(self.checkpoints.iterdir()):
                self._discard_file(entry, before, cleared)
        self._discard_file(self.mlflow_db, before, replaced=False)  # written in place: only a new one goes
        self._discard_file(self.mlflow_run, before, replaced=False)
        for folder in (self.checkpoints, self.tb, self.mlflow_artifacts):
            if not folder.is_dir() or folder.is_symlink():
                continue
            with contextlib.suppress(OSError):
                # the clearing removed tb/ whole: a tb/ now is this start's (its inode may be the old one's)
                if folder not in before or (cleared and folder == self.tb):
                    shutil.rmtree(folder)
                elif cleared and not any(folder.iterdir()):  # emptied by the clearing
                    folder.rmdir()

    @staticmethod
    def _discard_file(entry: Path, before: dict[Path, tuple[int, int]], replaced: bool) -> None:
        """Remove file `entry` if it is not in `before`, or (`replaced`) if it is another file now."""
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                return
            st = entry.lstat()
            if entry not in before or (replaced and before[entry] != (st.st_ino, st.st_mtime_ns)):
                entry.unlink()

    @property
    def tb(self) -> Path:
        """RUN/tb: TensorBoard's event files (`--log tensorboard`)."""
        return self.root / "tb"

    @property
    def mlflow_db(self) -> Path:
        """RUN/mlflow.db: the default MLflow store (`--log mlflow`)."""
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        """RUN/mlflow-artifacts: the default MLflow store's artifacts."""
        return self.root / "mlflow-artifacts"

    @property
    def mlflow_run(self) -> Path:
        """RUN/mlflow.json: which MLflow run this run folder logs to (kept across resumes)."""
        return self.root / "mlflow.json"

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every epoch's record from metrics.jsonl (empty if there is none yet)."""
        if not self.metrics.is_file():
            return []
        rows = []
        for n, raw in enumerate(self.metrics.read_bytes().splitlines(), 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:  # a binary file copied in, a damaged disk: not a traceback
                raise VaelabError(f"{self.metrics}: line {n} is not UTF-8 text") from None
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise VaelabError(f"{self.metrics}: line {n} is not valid JSON") from None
                if not _is_record(row):
                    raise VaelabError(
                        f"{self.metrics}: line {n} is not an epoch record (a JSON object with an integer "
                        "'epoch' and numbers or null for its statistics)"
                    )
                rows.append(row)
        return rows

    def write_metrics(self, rows: list[dict[str, Any]]) -> Path:
        """Rewrite metrics.jsonl whole (atomically), one JSON object per line.

        Args:
            rows: the epochs' records, in order.
        """
        return atomic_write_text(
            self.metrics, "".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in rows)
        )


def _is_record(row: Any) -> bool:
    """What `write_metrics` writes: an object, an integer epoch, every other value a number or null."""
    if not isinstance(row, dict) or type(row.get("epoch")) is not int:
        return False
    return all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in row.values())


# flock errors that mean "this file system cannot lock", not "someone holds the lock"
_NO_LOCKING = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_held: dict[Path, int] = {}  # lock files this process holds -> how many hold_lock calls share each


def _holder(fd: int) -> tuple[int | None, str]:
    """The pid and host written in an open lock file (None, "" if it holds nothing readable)."""
    text = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
    if len(text) >= 2 and text[0].isdigit():
        return int(text[0]), text[1]
    return None, ""


def _alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _in_use(run: RunDir, pid: int | None, host: str) -> VaelabError:
    who = f"pid {pid} on {host}" if pid is not None else "a training that is starting"
    return VaelabError(
        f"{run.root} is in use by another training ({who}; lock {run.lock}): wait for it to end, or train "
        "into another --out"
    )


def _flock(fd: int, run: RunDir, pid: int | None, host: str) -> bool:
    """flock the open lock file; False on a file system that cannot lock (the recorded pid decides there)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        raise _in_use(run, pid, host) from None
    except OSError as e:
        if e.errno not in _NO_LOCKING:
            raise
    if pid is not None and pid != os.getpid() and (host != socket.gethostname() or _alive(pid)):
        raise _in_use(run, pid, host)  # another host's pid cannot be asked: it counts as running
    return False


def _take(run: RunDir) -> int:
    """Open and lock RUN/.lock and write this process's pid and host into it; the open descriptor."""
    while True:
        try:
            fd = os.open(run.lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise VaelabError(f"cannot lock {run.root}: {e.strerror or e}") from None
        try:
            pid, host = _holder(fd)
            if _flock(fd, run, pid, host) and os.fstat(fd).st_ino != os.stat(run.lock).st_ino:
                os.close(fd)  # its holder removed the file as we opened it: lock the one there now
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        except FileNotFoundError:  # removed by its holder as we opened it: lock a new one
            os.close(fd)
            continue
        except OSError as e:
            os.close(fd)
            raise VaelabError(f"cannot lock {run.root}: {e.strerror or e}") from None
        except BaseException:
            os.close(fd)
            raise
        if pid is not None:
            print(
                f"vaelab: note: {run.lock} was left by pid {pid} on {host}, which has ended; taking the run "
                "folder over",
                file=sys.stderr,
            )
        return fd


@contextlib.contextmanager
def hold_lock(run: RunDir) -> Iterator[None]:
    """Hold the run folder's lock while the block runs (created if need be, and removed again if it is
    still empty at the end); a VaelabError naming the folder and the holder's pid if another process holds
    it. Re-entrant within a process; released on every exit (the kernel drops it if the process dies).

    Args:
        run: the run folder to lock.
    """
    key = run.lock.absolute()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    check_can_create(run.root)
    created = []
    for folder in (run.root, *run.root.absolute().parents):
        if folder.exists():
            break
        created.append(folder)
    ensure_dir(run.root)
    try:
        fd = _take(run)
    except BaseException:
        _remove_empty(created)
        raise
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        with contextlib.suppress(OSError):  # e.g. a folder turned read-only: the kernel still drops the flock
            run.lock.unlink()
        os.close(fd)
        _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a lock created (deepest first) while they are empty: a run refused before writing
    anything leaves nothing behind."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def read_eval(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(eval.json as a dict, None), or (None, why it could not be read), or (None, None) when absent (the
    report and the exported model card both show it).

    Args:
        path: the run's eval.json.
    """
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return None, f"{path.name} could not be read ({e})"
    if not isinstance(data, dict):
        return None, f"{path.name} does not hold a JSON object"
    return data, None
