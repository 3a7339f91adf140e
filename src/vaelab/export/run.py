"""`export_run`: a run's model out of vaelab, as ONNX or TorchScript graphs or as safetensors weights.

Everything is written into a temporary folder beside `out` and renamed into place only when complete (and, for
graphs, only once each has been run back and matches PyTorch), so a failure at any point leaves `out` as it was.
The run's checkpoint is read, and the output folder checked, before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vaelab.errors import ConfigError, VaelabError
from vaelab.export import FORMATS, PART_CHOICES
from vaelab.export.graphs import PARTS
from vaelab.io import FILE_MODE, atomic_write_json, check_can_create

MANIFEST = "export.json"
DIR_MODE = FILE_MODE | (FILE_MODE & 0o444) >> 2  # x wherever r: what mkdir gives under the same umask


@dataclass
class Exported:
    """What an export wrote (final paths) and the one-line notes on what it could not export, and why."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _check_out(out: Path, overwrite: bool) -> None:
    """One line now, before the checkpoint is read, if `out` cannot be (re)written."""
    check_can_create(out)  # a file in the way, a read-only parent, an empty path
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise VaelabError(
            f"{out} already holds files: pass --overwrite to replace the folder, or another --out"
        )


def write_folder(out: Path, fill: Callable[[Path], None]) -> None:
    """Call `fill(tmp)` on a fresh temporary folder beside `out`, then rename it to `out` (replacing an
    existing `out` whole); on any failure the temporary folder, and any parent made for it, is removed.

    Args:
        out: the folder to write.
        fill: writes the files into the folder it is given.
    """
    made = out.parent
    while not made.parent.exists() and made != made.parent:  # the highest parent this call creates
        made = made.parent
    made = made if not made.exists() else None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as e:
        raise VaelabError(f"cannot write {out}: {e.strerror or e}") from None
    try:
        os.chmod(tmp, DIR_MODE)  # a folder's mode under the umask, not mkdtemp's 0700
        fill(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as e:
        _remove(tmp, made)
        raise VaelabError(f"cannot write {out}: {e.strerror or e}") from None
    except BaseException:
        _remove(tmp, made)
        raise


def _remove(tmp: Path, made: Path | None) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    if made is not None:
        for p in [tmp.parent, *tmp.parent.parents]:  # the empty folders this export made, and no others
            with contextlib.suppress(OSError):
                p.rmdir()
            if p == made:
                break


def _parts(part: str) -> tuple[str, ...]:
    if part not in PART_CHOICES:
        raise ConfigError(f"unknown part '{part}': choose {', '.join(PART_CHOICES)}")
    return PARTS if part == "both" else (part,)


def export_run(
    run: str | os.PathLike,
    out: str | os.PathLike,
    format: str,
    part: str = "both",
    which: str = "best",
    overwrite: bool = False,
    note: Callable[[str], None] | None = None,
) -> Exported:
    """Export a run's model to `out`: ONNX or TorchScript graphs of its encoder and decoder, or safetensors
    weights with config.json and a model card.

    Args:
        run: a run folder or checkpoint file.
        out: the folder to write (created; an existing one needs `overwrite`).
        format: onnx, torchscript or safetensors.
        part: encoder, decoder or both (graphs only; safetensors holds the whole model).
        which: best or last, the checkpoint of a run folder.
        overwrite: replace an existing `out` that holds files.
        note: called with each one-line note on what is not exported (default: none).
    """
    from vaelab.export import formats

    if format not in FORMATS:
        raise ConfigError(f"unknown format '{format}': choose {', '.join(FORMATS)}")
    parts = _parts(part)
    if format == "safetensors":
        formats.require("safetensors", what="--format safetensors")
    else:
        formats.require(*formats.GRAPH_FORMATS[format].requires, what=f"--format {format}")
    out = Path(out)
    _check_out(out, overwrite)

    from vaelab.train.checkpoint import model_from_checkpoint, read_checkpoint, resolve_checkpoint

    ckpt = resolve_checkpoint(run, which)
    ck = read_checkpoint(ckpt)
    model = model_from_checkpoint(ck, ckpt).cpu().eval()
    result = Exported(out)
    say = note or (lambda _line: None)
    if format == "safetensors":
        if part != "both":
            say(f"--part {part} does not apply to safetensors: the weights of the whole model are written")
        _write_weights(result, model, ck, ckpt, Path(run), out)
        return result
    _write_graphs(result, model, ck, ckpt, _run_name(Path(run), ckpt), format, parts, say)
    return result


def _run_name(run: Path, ckpt: Path) -> str:
    return (run if run.is_dir() else ckpt.parent.parent).resolve().name


def _write_weights(result: Exported, model, ck: dict, ckpt: Path, run: Path, out: Path) -> None:
    from vaelab.export.card import model_card
    from vaelab.export.weights import save_weights
    from vaelab.io import atomic_write_text
    from vaelab.runs import RunDir

    root = run if run.is_dir() else ckpt.parent.parent
    card = model_card(
        title=_run_name(run, ckpt),
        folder=str(out),
        model=model,
        config=ck["config"],
        shape=tuple(ck["shape"]),
        checkpoint=ckpt.name,
        epoch=ck.get("epoch"),
        history=ck.get("history") or [],
        eval_json=RunDir(root).eval,
    )

    def fill(tmp: Path) -> None:
        written = save_weights(tmp, model, ck["config"], tuple(ck["shape"]), list(ck.get("plugins") or []))
        atomic_write_text(tmp / "README.md", card)
        result.files = [out / p.name for p in [*written, tmp / "README.md"]]

    write_folder(out, fill)


def _write_graphs(
    result: Exported, model, ck: dict, ckpt: Path, run_name: str, format: str, parts, say
) -> None:
    import torch

    import vaelab
    from vaelab.export import formats
    from vaelab.export.graphs import plan

    name = ck["config"]["model"]["name"]
    graphs, refused, notes = plan(model, tuple(ck["shape"]), parts, name)
    if not graphs:
        reasons = list(dict.fromkeys(refused.values()))  # both parts often share one reason
        named = reasons if len(reasons) == 1 else [f"{p}: {why}" for p, why in refused.items()]
        raise VaelabError(f"nothing to export as {format}: {'; '.join(named)}")
    for part, why in refused.items():
        say(f"{part} not exported: {why}")
    for line in notes:
        say(line)
    result.notes = [f"{p} not exported: {w}" for p, w in refused.items()] + notes
    fmt = formats.GRAPH_FORMATS[format]
    manifest = {
        "format": format,
        "load_with": fmt.loader,
        "run": run_name,
        "checkpoint": ckpt.name,
        "epoch": ck.get("epoch"),
        "model": name,
        "shape": list(ck["shape"]),
        "graphs": {},
        "not_exported": refused,
        "notes": notes,
        "tolerance": formats.TOLERANCE,
        "checked_batches": list(formats.CHECK_BATCHES),
        "versions": {"vaelab": vaelab.__version__, "torch": torch.__version__},
    }

    def fill(tmp: Path) -> None:
        for g in graphs:
            path = tmp / f"{g.part}{fmt.suffix}"
            how = fmt.write(g, path)
            diff = formats.check(fmt, path, g)
            manifest["graphs"][g.part] = {
                "file": path.name,
                **g.shapes(),
                "distribution": g.distribution,
                **how,
                "max_abs_diff": diff,
            }
        atomic_write_json(tmp / MANIFEST, manifest)
        result.files = [result.folder / f"{g.part}{fmt.suffix}" for g in graphs] + [result.folder / MANIFEST]

    write_folder(result.folder, fill)
