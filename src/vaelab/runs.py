"""The run folder: where a run keeps its config, checkpoints, metrics, evaluation, figures and report."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError
from vaelab.io import atomic_write_text, json_safe


@dataclass(frozen=True)
class RunDir:
    """Paths inside `runs/<name>/` (DESIGN.md)."""

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike) -> RunDir:
        """The run folder at `path` (not created).

        Args:
            path: the run's folder.
        """
        return cls(Path(path))

    @property
    def config(self) -> Path:
        """config.json: the run's config (editable; the checkpoints hold their own)."""
        return self.root / "config.json"

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

    def clear_outputs(self) -> None:
        """Remove what a previous run left (checkpoints, metrics, eval.json, report, figures), so that a run
        started again over it (--overwrite) shows nothing of the old model."""
        import shutil

        for f in (self.best, self.last, self.metrics, self.eval, self.report):
            f.unlink(missing_ok=True)
        shutil.rmtree(self.figures, ignore_errors=True)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every epoch's record from metrics.jsonl (empty if there is none yet)."""
        if not self.metrics.is_file():
            return []
        rows = []
        for n, line in enumerate(self.metrics.read_text(encoding="utf-8").splitlines(), 1):
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
