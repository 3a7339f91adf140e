"""A model as safetensors weights beside its config: a folder anyone can read, that `vaelab.load` reads with no
pickle at all.

`model.safetensors` holds the state dict (every tensor its own copy, so tied weights load too) and, in its
header's metadata, the datum shape the model was built for and the plugin that registered it, if any;
`config.json` is the run's whole config. Loading builds the model from config.json through the model registry
and `load_state_dict`s the tensors: no `torch.load`, no unpickling, so a crafted file can run no code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelab.errors import CheckpointError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT = "vaelab-safetensors"
VERSION = "1"


def is_weights_folder(path: str | os.PathLike) -> bool:
    """True for a folder `vaelab export --format safetensors` wrote (it holds model.safetensors), or that file.

    Args:
        path: a folder or file.
    """
    p = Path(path)
    return (p.is_dir() and (p / WEIGHTS).is_file()) or (p.is_file() and p.suffix == ".safetensors")


def save_weights(
    folder: Path, model: nn.Module, config: dict[str, Any], shape: tuple[int, ...], plugins: list[str]
) -> list[Path]:
    """Write model.safetensors and config.json into `folder`.

    Args:
        folder: where (the export's temporary folder).
        model: the model whose state dict is written.
        config: the run's config as a dict.
        shape: one datum's shape (C, H, W).
        plugins: the plugins that registered the model ([] for a built-in one).
    """
    from safetensors.torch import save  # bytes: save_file writes its file 0600, whatever the umask

    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "shape": json.dumps(list(shape)),
        "plugins": json.dumps(plugins),
    }
    (folder / WEIGHTS).write_bytes(save(tensors, metadata=meta))
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return [folder / WEIGHTS, folder / CONFIG]


def _header(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e).strip()[:160]})") from None


def read_weights_folder(path: str | os.PathLike) -> dict[str, Any]:
    """What `model_from_checkpoint` needs (config, shape, model, plugins), read from an exported folder.

    Args:
        path: the folder (or its model.safetensors).
    """
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            f"{path}: a safetensors folder needs the safetensors package: pip install vaelab[export]"
        ) from None
    p = Path(path)
    folder = p.parent if p.is_file() else p
    weights = p if p.is_file() else folder / WEIGHTS
    meta = _header(weights)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{weights}: not written by vaelab export (no '{FORMAT}' in its metadata)")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{weights}: export version {meta.get('version')}, this vaelab reads {VERSION}")
    try:
        shape = json.loads(meta["shape"])
        plugins = json.loads(meta.get("plugins", "[]"))
    except (KeyError, ValueError):
        raise CheckpointError(f"{weights}: its metadata lacks a readable 'shape'") from None
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except OSError as e:
        raise CheckpointError(f"{folder / CONFIG}: unreadable ({e.strerror or e})") from None
    except ValueError as e:
        raise CheckpointError(f"{folder / CONFIG}: not JSON ({e})") from None
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: corrupt safetensors file ({str(e).strip()[:160]})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{folder / CONFIG}: does not hold a JSON object")
    ok_shape = (
        isinstance(shape, list) and len(shape) == 3 and all(isinstance(d, int) and d > 0 for d in shape)
    )
    if not ok_shape:
        raise CheckpointError(f"{weights}: malformed 'shape' {shape!r} in its metadata (not [C, H, W])")
    return {"config": config, "shape": shape, "model": tensors, "plugins": plugins}


def load_weights_folder(path: str | os.PathLike) -> nn.Module:
    """Rebuild the model of an exported safetensors folder (config.json through the model registry, then
    load_state_dict): no torch.load, no pickle.

    Args:
        path: the folder (or its model.safetensors).
    """
    from vaelab.train.checkpoint import model_from_checkpoint

    ck = read_weights_folder(path)
    model = model_from_checkpoint(ck, Path(path))
    return model.to(torch.device("cpu"))
