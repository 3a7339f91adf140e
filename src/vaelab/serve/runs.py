"""The runs a server explores: found under one root, named safely, each model loaded once and cached.

A name is a single folder name under the root (or the root's own name when the root is one run). Names
with slashes, `..`, absolute paths, or folders and checkpoints that resolve (through symlinks) outside
the root are refused, so a request can only ever reach the runs that were listed.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelab.commands.common import OpenRun, open_run
from vaelab.data import SPLIT_SEED_OFFSET, iterate
from vaelab.errors import VaelabError
from vaelab.runs import RunDir
from vaelab.serve.explore import Abilities, abilities, batch_codes
from vaelab.viz.figures import codes as posterior_means

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class RunNameError(VaelabError):
    """A run name that can never be valid (slashes, `..`, absolute paths): the client's mistake."""


class UnknownRun(VaelabError):
    """A well-formed name that is not one of the runs being served."""


@dataclass
class LoadedRun:
    """A run ready to explore: its model, what the explorer can do with it, and (once asked for) its test
    codes for the scatter and the pad's plane."""

    name: str
    model: nn.Module
    model_name: str
    likelihood: str
    shape: tuple[int, int, int]
    abilities: Abilities
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
        if self.abilities.classes is None:
            return "posterior means of q(z|x)"
        return "means of q(z|x,y) at each test image's own label y"

    @property
    def device(self) -> torch.device:
        return _device(self.model)

    @property
    def latent_dim(self) -> int | None:
        """D of the z the run decodes (None for a model without a latent variable)."""
        return self.abilities.latent_dim

    @property
    def generative(self) -> bool:
        """Whether the model can draw samples of its own (a prior or an ancestral sampler)."""
        return self.abilities.generative


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except OSError:
        return False


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
        self.device = device
        self.data_dir = data_dir
        self.max_codes = max_codes
        self._loaded: dict[str, LoadedRun] = {}
        self._opened: dict[str, OpenRun] = {}
        self._lock = threading.Lock()
        if not self.names():
            raise VaelabError(
                f"{given}: no runs here (a run folder holds checkpoints/best.pt or checkpoints/last.pt)"
            )

    def names(self) -> list[str]:
        """The runs being served, rescanned on every call so that newly trained runs appear."""
        if self.single:
            return [self.root.name]
        found = []
        for child in sorted(self.root.iterdir()):
            if NAME_RE.match(child.name) and child.is_dir() and self._valid_run(child):
                found.append(child.name)
        return found

    def _valid_run(self, folder: Path) -> bool:
        ck = _checkpoint(folder)
        return ck is not None and _inside(folder, self.root) and _inside(ck, self.root)

    def path(self, name: str) -> Path:
        """The folder of run `name`, after checking the name cannot leave the root."""
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise RunNameError(
                f"invalid run name {name!r}: a run is named by one folder name "
                "(letters, digits, '.', '_', '-'; no slashes)"
            )
        if self.single:
            if name != self.root.name:
                raise UnknownRun(f"no run named {name!r} (serving only {self.root.name!r})")
            return self.root
        folder = self.root / name
        if not folder.is_dir() or not self._valid_run(folder):
            raise UnknownRun(f"no run named {name!r} under the served folder")
        return folder

    def info(self, name: str) -> dict[str, Any]:
        """What /api/runs says of a run: its config.json, and what the explorer can do with its model (the
        model is loaded for that, not its data); a run that fails to load carries a one-line `error`."""
        entry: dict[str, Any] = {"name": name}
        cfg_file = RunDir(self.path(name)).config
        try:
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
            entry.update(
                model=cfg["model"]["name"],
                data=cfg["data"]["name"],
                latent_dim=cfg["model"]["latent_dim"],
                likelihood=cfg["model"]["likelihood"],
                binarize=cfg["data"]["binarize"],
            )
        except (OSError, ValueError, KeyError, TypeError):
            pass
        try:
            run = self.get(name)
        except (VaelabError, OSError, RuntimeError, ValueError) as e:
            entry["error"] = " ".join(str(e).split()) or type(e).__name__
            return entry
        entry.update(
            model=run.model_name,
            latent_dim=run.latent_dim,
            generative=run.generative,
            capabilities=run.abilities.as_json(),
        )
        return entry

    def get(self, name: str) -> LoadedRun:
        """The loaded run `name` (loaded on first use, then cached for the life of the server)."""
        folder = self.path(name)
        cached = self._loaded.get(name)
        if cached is not None:
            return cached
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name, folder)
            return self._loaded[name]

    def latents(self, name: str) -> LoadedRun:
        """The loaded run `name` with its test codes (computed on first use, then cached)."""
        run = self.get(name)
        run.abilities.require("latents")
        if not run.codes_ready:
            with self._lock:
                if not run.codes_ready:
                    self._codes(run)
        return run

    def _load(self, name: str, folder: Path) -> LoadedRun:
        opened = open_run(str(folder), self.device)
        self._opened[name] = opened
        cfg = opened.config.data
        return LoadedRun(
            name=name,
            model=opened.model,
            model_name=opened.config.model.name,
            likelihood=opened.config.model.likelihood,
            shape=opened.shape,
            abilities=abilities(opened.model, opened.config.model.name),
            binarize=cfg.binarize,
            upload_seed=cfg.binarize_seed + SPLIT_SEED_OFFSET["test"],
            data=cfg.name,
        )

    def _codes(self, run: LoadedRun) -> None:
        model, ab = run.model, run.abilities
        try:
            test = self._opened[run.name].split("test", self.data_dir)
            labels = test.labels_at(slice(0, self.max_codes))
            if ab.classes is None:
                z = posterior_means(model, test, limit=self.max_codes)
            elif labels is None:
                raise VaelabError(f"the test split has no labels, and {run.model_name} encodes q(z|x,y)")
            else:
                batches = takewhile(lambda b: b[0].start < len(labels), iterate(test, 1000))
                z = torch.cat([batch_codes(model, ab, x, test.labels_at(sl)) for sl, x in batches])
            run.codes = z[: self.max_codes].float().cpu()
            run.labels = None if labels is None else labels[: len(run.codes)].cpu()
        except VaelabError as e:
            run.note = f"no test codes to draw: {e}"
        run.codes_ready = True


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def plane_summary(z: torch.Tensor | None, latent_dim: int) -> dict[str, Any]:
    """Mean, spread and the top two principal directions of the codes (what the pad needs when D > 2)."""
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
