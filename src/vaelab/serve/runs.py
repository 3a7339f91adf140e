"""The runs a server explores: found under one root, named safely, each model loaded once and cached.

A name is a single folder name under the root (or the root's own name when the root is one run), used as
it is: spaces, '+' and non-ASCII letters are fine (the page URL-quotes what it sends). Names with slashes,
a leading '.' (hidden folders, `..`), unprintable characters or over 255 bytes are refused, and so are
folders and checkpoints that resolve (through symlinks) outside the root, so a request can only ever
reach the runs that were listed. A folder holding a checkpoint that is refused is listed as skipped, with
the reason, rather than hidden.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelab.commands.common import OpenRun, open_run
from vaelab.data import SPLIT_SEED_OFFSET, iterate
from vaelab.device import resolve_device
from vaelab.errors import CheckpointError, VaelabError
from vaelab.runs import RunDir
from vaelab.serve.explore import ExplorerView, NotFinite, batch_codes, explorer_view, finite
from vaelab.viz.figures import codes as posterior_means
from vaelab.viz.tables import is_table_model

MAX_NAME_BYTES = 255  # the longest file name ext4, XFS and APFS take


class RunNameError(VaelabError):
    """A run name that can never be valid (slashes, `..`, absolute paths): the client's mistake."""


def name_problem(name: str) -> str | None:
    """Why `name` cannot be one run folder under the root (None when it can).

    Args:
        name: a run name from a request or a folder listing.
    """
    if not name:
        return "it is empty"
    if "/" in name or "\\" in name:
        return "it has a slash: a run is named by one folder name"
    if name.startswith("."):
        return "it starts with '.': hidden folders and '..' are not served"
    if not name.isprintable():
        return "it has control or unprintable characters, or is not valid UTF-8"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes"
    return None


def shown(name: str, limit: int = 80) -> str:
    """`name` quoted for a one-line message (control characters and undecodable bytes escaped).

    Args:
        name: a run name.
        limit: the most characters shown (longer names end in "...").
    """
    text = repr(name)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class UnknownRun(VaelabError):
    """A well-formed name that is not one of the runs being served."""


class TableRun(VaelabError):
    """A run trained on a table (csv:, parquet:): its rows are not pictures, and the explorer draws pictures."""


TABLE_NOTE = "the explorer shows image runs; vaelab report RUN shows a table's columns and marginals"


def table_data(folder: Path) -> str | None:
    """The data name of a table run (its config.json has a table's layout), else None (images, or unreadable:
    loading the run decides then)."""
    import json

    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        table = cfg.get("model", {}).get("table") or cfg.get("data", {}).get("table")
        return str(cfg["data"].get("name", "a table")) if table else None
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None


@dataclass
class LoadedRun:
    """A run ready to explore: its model, what the explorer can do with it, and (once asked for) its test
    codes for the scatter and the pad's plane."""

    name: str
    model: nn.Module
    model_name: str
    likelihood: str
    shape: tuple[int, int, int]
    view: ExplorerView
    binarize: str
    upload_seed: int
    data: str
    codes: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    note: str | None = None
    codes_ready: bool = False

    @property
    def codes_of(self) -> str:
        """What the test codes are."""
        if self.view.classes is None:
            return "posterior means of q(z|x)"
        return "means of q(z|x,y) at each test image's own label y"

    @property
    def device(self) -> torch.device:
        """Where the model lives."""
        return _device(self.model)

    @property
    def latent_dim(self) -> int | None:
        """D of the z the run decodes (None for a model without a latent variable)."""
        return self.view.latent_dim

    @property
    def generative(self) -> bool:
        """Whether the model can draw samples of its own (a prior or an ancestral sampler)."""
        return self.view.generative

    @property
    def abilities(self) -> ExplorerView:
        """The name `view` had before Capabilities."""
        return self.view


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except OSError:
        return False


def _utf8(name: str) -> bool:
    """Whether a file name read from the disk is UTF-8 (else it holds surrogate escapes JSON cannot carry)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _checkpoint(folder: Path) -> Path | None:
    run = RunDir(folder)
    return next((c for c in (run.best, run.last) if c.is_file()), None)


class Catalog:
    """The runs under `root` (a folder of runs, or one run), with a cache of loaded models."""

    def __init__(
        self, root: str | Path, device: str = "cpu", data_dir: str | None = None, max_codes: int = 2000
    ) -> None:
        given = Path(root).expanduser()
        if not given.is_dir():
            raise VaelabError(f"no run folder at {given}")
        self.root = given.resolve()
        self.single = _checkpoint(self.root) is not None
        if self.single and not _utf8(self.root.name):
            raise VaelabError(
                f"{given}: the run folder's name is not valid UTF-8, so the page cannot name it"
            )
        data = table_data(self.root) if self.single else None
        if data is not None:
            raise TableRun(f"{given} is a table run ({data}): {TABLE_NOTE}")
        self.device = str(resolve_device(device))
        self.data_dir = data_dir
        self.max_codes = max_codes
        self._loaded: dict[str, LoadedRun] = {}
        self._opened: dict[str, OpenRun] = {}
        self._lock = threading.Lock()
        names, skipped = self.scan()
        if not names:
            raise VaelabError(
                f"{given}: no runs here (a run folder holds checkpoints/best.pt or checkpoints/last.pt)"
                + (f"; skipped {skipped_text(skipped)}" if skipped else "")
            )
        if self.single:  # the one run served: a checkpoint that does not load stops the start, in one line
            self.get(self.root.name)

    def scan(self) -> tuple[list[str], list[tuple[str, str]]]:
        """The runs being served, and the folders holding a checkpoint that are not (with the reason).

        Rescanned on every call, so that newly trained runs appear."""
        if self.single:
            return [self.root.name], []
        found: list[str] = []
        skipped: list[tuple[str, str]] = []
        for child in sorted(self.root.iterdir()):
            try:
                ck = _checkpoint(child) if child.is_dir() else None
            except OSError as e:
                skipped.append((child.name, f"it cannot be read ({e.strerror or e})"))
                continue
            if ck is None:
                continue
            problem = name_problem(child.name)
            if problem is None and not _inside(child, self.root):
                problem = "it resolves through a symlink to outside the served folder"
            if problem is None and not _inside(ck, self.root):
                problem = "its checkpoint resolves through a symlink to outside the served folder"
            if problem is None and table_data(child) is not None:
                problem = f"it is a table run: {TABLE_NOTE}"
            if problem is None:
                found.append(child.name)
            else:
                skipped.append((child.name, problem))
        return found, skipped

    def names(self) -> list[str]:
        """The runs being served (rescanned on every call)."""
        return self.scan()[0]

    def _valid_run(self, folder: Path) -> bool:
        ck = _checkpoint(folder)
        return ck is not None and _inside(folder, self.root) and _inside(ck, self.root)

    def path(self, name: str) -> Path:
        """The folder of run `name`, after checking the name cannot leave the root: RunNameError for a name that
        can never be valid, UnknownRun for one that is not served.

        Args:
            name: the run's name from a request.
        """
        if not isinstance(name, str):
            raise RunNameError(f"invalid run name {name!r}: a run is named by one folder name")
        if self.single and name == self.root.name:
            return self.root
        problem = name_problem(name)
        if problem is not None:
            raise RunNameError(f"invalid run name {shown(name)}: {problem}")
        if self.single:
            raise UnknownRun(f"no run named {shown(name)} (serving only {shown(self.root.name)})")
        folder = self.root / name
        if not folder.is_dir() or not self._valid_run(folder):
            raise UnknownRun(f"no run named {shown(name)} under the served folder")
        return folder

    def info(self, name: str) -> dict[str, Any]:
        """What /api/runs says of a run: what its model was trained with (the checkpoint's own config, not
        the editable config.json) and what the explorer can do with it (the model is loaded for that, not its
        data); a run that fails to load, for whatever reason, carries a one-line `error` instead.

        Args:
            name: a served run's name.
        """
        entry: dict[str, Any] = {"name": name}
        try:
            run = self.get(name)
        except VaelabError as e:
            entry["error"] = " ".join(str(e).split()) or type(e).__name__
            return entry
        entry.update(
            model=run.model_name,
            data=run.data,
            latent_dim=run.latent_dim,
            likelihood=run.likelihood,
            binarize=run.binarize,
            generative=run.generative,
            capabilities=run.view.as_json(),
        )
        return entry

    def get(self, name: str) -> LoadedRun:
        """The loaded run `name` (loaded on first use, then cached for the life of the server).

        Args:
            name: the run's name from a request.
        """
        folder = self.path(name)
        cached = self._loaded.get(name)
        if cached is not None:
            return cached
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name, folder)
            return self._loaded[name]

    def latents(self, name: str) -> LoadedRun:
        """The loaded run `name` with its test codes (computed on first use, then cached); Unsupported for a
        model that cannot encode.

        Args:
            name: the run's name from a request.
        """
        run = self.get(name)
        run.view.require("latents")
        if not run.codes_ready:
            with self._lock:
                if not run.codes_ready:
                    self._codes(run)
        return run

    def _load(self, name: str, folder: Path) -> LoadedRun:
        """The run's model, with what it was trained with; CheckpointError (one line) if it does not load."""
        try:
            opened = open_run(str(folder), self.device)
            cfg = opened.config.data
            run = LoadedRun(
                name=name,
                model=opened.model,
                model_name=opened.config.model.name,
                likelihood=opened.config.model.likelihood,
                shape=opened.shape,
                view=explorer_view(opened.model, opened.config.model.name),
                binarize=cfg.binarize,
                upload_seed=cfg.binarize_seed + SPLIT_SEED_OFFSET["test"],
                data=cfg.name,
            )
        except VaelabError:
            raise
        except (
            Exception
        ) as e:  # a sealed checkpoint with a malformed body fails in many ways: each is one run's
            where = _checkpoint(folder) or folder
            reason = " ".join(str(e).split())[:200]
            raise CheckpointError(
                f"{where}: the checkpoint does not load ({type(e).__name__}{': ' + reason if reason else ''})"
            ) from None
        if is_table_model(opened.model):  # a config.json that does not say so: the checkpoint does
            raise TableRun(f"{name} is a table run ({run.data}): {TABLE_NOTE}")
        self._opened[name] = opened
        return run

    def _codes(self, run: LoadedRun) -> None:
        model, view = run.model, run.view
        try:
            test = self._opened[run.name].split("test", self.data_dir)
            labels = test.labels_at(slice(0, self.max_codes))
            if view.classes is None:
                z = posterior_means(model, test, limit=self.max_codes)
            elif labels is None:
                raise VaelabError(f"the test split has no labels, and {run.model_name} encodes q(z|x,y)")
            else:
                batches = takewhile(lambda b: b[0].start < len(labels), iterate(test, 1000))
                z = torch.cat([batch_codes(model, view, x, test.labels_at(sl)) for sl, x in batches])
            run.codes = finite(z[: self.max_codes].float().cpu(), "the test images' posterior means")
            run.labels = None if labels is None else labels[: len(run.codes)].cpu()
        except (VaelabError, NotFinite) as e:
            run.note = f"no test codes to draw: {e}"
        run.codes_ready = True


def skipped_text(skipped: list[tuple[str, str]], most: int = 5) -> str:
    """Skipped folders and why, on one line (for the command's output and errors).

    Args:
        skipped: (folder name, reason) pairs from `Catalog.scan`.
        most: name at most this many, then count the rest.
    """
    parts = [f"{shown(name)} ({why})" for name, why in skipped[:most]]
    return ", ".join(parts) + (f" and {len(skipped) - most} more" if len(skipped) > most else "")


def skipped_json(skipped: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Skipped folders and why, for /api/runs (a name that is not UTF-8 is given escaped).

    Args:
        skipped: (folder name, reason) pairs from `Catalog.scan`.
    """
    return [{"name": name if _utf8(name) else shown(name), "reason": why} for name, why in skipped]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def plane_summary(z: torch.Tensor | None, latent_dim: int) -> dict[str, Any]:
    """Mean, spread and the top two principal directions of the codes (what the pad needs when D > 2); the
    standard axes at unit scale when there are fewer than two codes.

    Args:
        z: the run's test codes [N, D], or None.
        latent_dim: D.
    """
    if z is None or len(z) < 2:
        eye = torch.eye(latent_dim)[: min(2, latent_dim)]
        return {
            "mean": [0.0] * latent_dim,
            "std": [1.0] * latent_dim,
            "pca": {"axes": eye.tolist(), "scales": [1.0] * len(eye), "explained": [None] * len(eye)},
        }
    mean = z.mean(0)
    centred = z - mean
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    k = min(2, v.shape[0])
    total = float((s**2).sum()) or 1.0
    return {
        "mean": mean.tolist(),
        "std": z.std(0).tolist(),
        "pca": {
            "axes": v[:k].tolist(),
            "scales": (s[:k] / math.sqrt(len(z) - 1)).tolist(),
            "explained": (s[:k] ** 2 / total).tolist(),
        },
    }
