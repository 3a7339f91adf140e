"""The ranks of a local launch (`vaelab train --nproc N`, `distributed.launch`): what each rank runs, and the
one line a failed job is reported by.

Each rank runs `entry(*args)`; a rank that fails writes its own message to `message_dir/rank<R>` and exits 1
quietly. When the job fails, the killed rank is named first, else the lowest rank's own error, not the
"lost contact" the others saw because of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError


def run_rank(entry: Callable[..., Any], args: tuple, message_dir: str) -> Any:
    """Run `entry(*args)` in a rank; a failure is written to `message_dir/rank<R>` and exits 1 quietly.

    Args:
        entry: the function the rank runs.
        args: its arguments.
        message_dir: the folder each failed rank writes its one line to.
    """
    rank = int(os.environ.get("RANK") or 0)  # set by torch elastic in every rank it starts
    try:
        return entry(*args)
    except VaelabError as e:
        text = " ".join(str(e).split())
    except Exception as e:  # a peer's death shows up as a backend error here; report it as one line
        text = " ".join(f"{type(e).__name__}: {e}".split())[:400]
    Path(message_dir, f"rank{rank}").write_text(text, encoding="utf-8")
    raise SystemExit(1)


@contextlib.contextmanager
def quiet_elastic() -> Iterator[None]:
    """torch elastic and torch.multiprocessing log each failure at length; `launch` reports it in one line."""
    prefixes = ("torch.distributed", "torch.multiprocessing")
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith(prefixes)]
    loggers = [logging.getLogger(n) for n in (*prefixes, *names)]
    old = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg, was in zip(loggers, old):
            lg.disabled = was


def explain(failures: dict[int, Any], message_dir: str) -> str:
    """One line for a failed job: a killed rank first, else the lowest rank's own message.

    Args:
        failures: rank -> its failure (with `exitcode`; negative: killed by that signal).
        message_dir: the folder the ranks wrote their messages to (`run_rank`).
    """
    for rank, f in sorted(failures.items()):
        if f.exitcode < 0 and -f.exitcode != signal.SIGTERM:
            name = (
                signal.Signals(-f.exitcode).name if -f.exitcode in signal.Signals._value2member_map_ else ""
            )
            return f"rank {rank} died ({name or f'signal {-f.exitcode}'}); the job stopped"
    messages = {}
    for p in Path(message_dir).glob("rank*"):
        messages[int(p.name[4:])] = p.read_text(encoding="utf-8")
    # a rank's own error comes first; torch's collective errors and our "lost contact" wrapping of them are
    # what the other ranks saw when that rank failed
    ours = {
        r: m
        for r, m in messages.items()
        if not m.startswith(("DistBackendError", "RuntimeError"))
        and "lost contact with the other ranks" not in m
    }
    chosen = ours or messages
    if chosen:
        rank = min(chosen)
        return chosen[rank]
    rank, f = min(failures.items())
    return f"rank {rank} exited with code {f.exitcode}; the job stopped"
