"""Checkpoints that carry their own config (as nanoGPT's do) and load with torch.load(weights_only=True).

A checkpoint holds the model's weights, the optimiser and scheduler, epoch and step, every RNG state, the
whole config and the metrics so far: enough to rebuild the model alone, or to resume training exactly.
Loading never unpickles arbitrary objects; the body is sealed by its SHA-256, so a crafted, truncated,
bit-flipped or foreign file is refused with its name. A model registered by a plugin is recorded with the
plugin's name (`plugins`); loading names it when it is missing, and never imports it by itself.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelab.config import Config
from vaelab.errors import CheckpointError, ConfigError
from vaelab.io import atomic_save
from vaelab.models.registry import MODELS, SOURCES, build_model
from vaelab.plugins import PluginError, load_plugins
from vaelab.runs import RunDir

FORMAT = "vaelab-checkpoint"
VERSION = 1


def _plugins_of(payload: dict[str, Any]) -> list[str]:
    """The plugin that registered the payload's model, if one did (vaelab.plugins)."""
    cfg = payload.get("config")
    model = cfg.get("model") if isinstance(cfg, dict) else None
    source = SOURCES.get(model.get("name")) if isinstance(model, dict) else None
    return [source] if source else []


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (temporary name, fsync, rename), its body sealed by a SHA-256.

    Args:
        path: the file to write.
        payload: weights, config, shape and the rest (plain data and tensors); a model registered by a
            plugin gets `plugins`, the plugin's name, added.
    """
    plugins = _plugins_of(payload)
    if plugins and "plugins" not in payload:
        payload = {**payload, "plugins": plugins}
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    outer = {
        "format": FORMAT,
        "version": VERSION,
        "sha256": hashlib.sha256(body).hexdigest(),
        "body": torch.frombuffer(bytearray(body), dtype=torch.uint8),
    }
    return atomic_save(path, lambda f: torch.save(outer, f))


def _safe_load(data: bytes, p: Path) -> Any:
    if not data.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip archive, or a pickle stream
        raise CheckpointError(f"{p}: not a vaelab checkpoint (not a file torch.save writes)")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{p}: refused: it holds objects other than tensors and plain data ({first[:160]})"
        ) from None
    except Exception as e:  # torch raises many types on damaged zip archives; all mean the same here
        raise CheckpointError(f"{p}: corrupt or truncated checkpoint ({type(e).__name__})") from None


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint safely (weights_only=True) onto the CPU; CheckpointError on anything wrong.

    Args:
        path: the checkpoint file.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{p}: unreadable ({e.strerror or e})") from None
    outer = _safe_load(data, p)
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a vaelab checkpoint")
    if outer.get("version") != VERSION:
        raise CheckpointError(
            f"{p}: checkpoint version {outer.get('version')}, this vaelab reads version {VERSION}"
        )
    body = outer.get("body")
    if not isinstance(body, torch.Tensor) or body.dtype != torch.uint8:
        raise CheckpointError(f"{p}: not a vaelab checkpoint (no body)")
    raw = body.numpy().tobytes()
    if hashlib.sha256(raw).hexdigest() != outer.get("sha256"):
        raise CheckpointError(f"{p}: corrupt checkpoint (its SHA-256 does not match its content)")
    ck = _safe_load(raw, p)
    if not isinstance(ck, dict):
        raise CheckpointError(f"{p}: not a vaelab checkpoint")
    for key in ("config", "shape", "model"):
        if key not in ck:
            raise CheckpointError(f"{p}: checkpoint lacks '{key}'")
    _check_types(ck, p)
    return ck


def _check_types(ck: dict[str, Any], p: Path) -> None:
    """A sealed body can still be malformed (written by other code): one line instead of a traceback later."""
    shape = ck["shape"]
    if (
        not isinstance(shape, list | tuple)
        or len(shape) != 3
        or not all(isinstance(d, int) and d > 0 for d in shape)
    ):
        raise CheckpointError(
            f"{p}: malformed checkpoint ('shape' is {shape!r}, not [C, H, W] positive sizes)"
        )
    if not isinstance(ck["config"], dict):
        raise CheckpointError(f"{p}: malformed checkpoint ('config' is a {type(ck['config']).__name__})")
    model = ck["model"]
    if not isinstance(model, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()
    ):
        raise CheckpointError(f"{p}: malformed checkpoint ('model' is not a dict of tensors)")
    plugins = ck.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(s, str) for s in plugins):
        raise CheckpointError(f"{p}: malformed checkpoint ('plugins' is not a list of names)")


def resolve_checkpoint(path: str | os.PathLike, which: str = "best") -> Path:
    """A checkpoint file, or a run folder's best.pt (falling back to last.pt).

    Args:
        path: a checkpoint file or a run folder.
        which: "best" or "last": the run folder's checkpoint tried first.
    """
    if not str(path).strip():  # an unset shell variable: "" would be the current folder
        raise CheckpointError("the run folder or checkpoint is an empty path: name one, e.g. runs/mine")
    p = Path(path)
    if p.is_dir():
        run = RunDir(p)
        order = (run.best, run.last) if which == "best" else (run.last, run.best)
        for c in order:
            if c.is_file():
                return c
        if p.name == "checkpoints" and any(p.glob("*.pt")):  # a run's own checkpoints folder
            raise CheckpointError(f"{p}: name the run folder ({p.parent}) or a checkpoint file in it")
        raise CheckpointError(f"{p}: no checkpoint in {run.checkpoints} (train the run first)")
    if not p.exists():
        raise CheckpointError(f"no run folder or checkpoint at {p}")
    return p


def config_of(ck: dict[str, Any], path: str | os.PathLike = "") -> Config:
    """The Config stored in a checkpoint.

    Args:
        ck: a checkpoint as `read_checkpoint` returns it.
        path: its file, named in errors.
    """
    try:
        return Config.from_dict(ck["config"])
    except ConfigError as e:
        raise CheckpointError(f"{path}: its config does not load ({e})") from None


def model_from_checkpoint(ck: dict[str, Any], path: str | os.PathLike = "") -> nn.Module:
    """Rebuild the model of a checkpoint and load its weights, saying what differs if they do not fit.

    Args:
        ck: a checkpoint as `read_checkpoint` returns it.
        path: its file, named in errors.
    """
    cfg = config_of(ck, path)
    plugins = ck.get("plugins") or []
    if cfg.model.name not in MODELS and plugins:
        flags = " ".join(f"--plugin {s}" for s in plugins)
        raise PluginError(
            f"{path}: model '{cfg.model.name}' comes from plugin {', '.join(plugins)}; pass {flags} "
            "(or vaelab.load_plugin in Python): opening a run imports no code by itself"
        )
    model = build_model(cfg.model, tuple(ck["shape"]))
    own = model.state_dict()
    theirs = ck["model"]
    missing = sorted(set(own) - set(theirs))
    extra = sorted(set(theirs) - set(own))
    shapes = [
        f"{k} {tuple(theirs[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in theirs and own[k].shape != theirs[k].shape
    ]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:5])}")
        if shapes:
            parts.append(f"shapes differ: {'; '.join(shapes[:5])}")
        raise CheckpointError(
            f"{path}: weights do not fit a '{cfg.model.name}' model built from its config: {'; '.join(parts)}"
        )
    _check_finite(theirs, path)
    model.load_state_dict(theirs)
    return model


def _check_finite(state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Weights holding NaN or inf load, then draw blank images and NaN bounds: refuse them, naming the first."""
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"{path}: the model's weights hold NaN or inf ({name}); the run diverged before this "
                "checkpoint was written?"
            )


def load(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    which: str = "best",
    plugins: Iterable[str] = (),
) -> nn.Module:
    """Rebuild a trained model from a checkpoint file, a run folder or a folder `vaelab export --format
    safetensors` wrote (read with no pickle), in eval mode on `device`.

    Args:
        path: a run folder, a checkpoint file, or an exported safetensors folder.
        device: where the model goes ("cpu", "cuda", a torch.device).
        which: "best" or "last" checkpoint of a run folder.
        plugins: modules or .py files to import first, for a model registered outside vaelab.
    """
    load_plugins(plugins)
    from vaelab.export.weights import is_weights_folder, load_weights_folder

    if str(path).strip() and is_weights_folder(path):  # `vaelab export --format safetensors`: no pickle
        return load_weights_folder(path).to(device).eval()
    ckpt = resolve_checkpoint(path, which)
    model = model_from_checkpoint(read_checkpoint(ckpt), ckpt)
    return model.to(device).eval()
