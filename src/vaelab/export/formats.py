"""Graph formats: ONNX (run by onnxruntime) and TorchScript (run by `torch.jit.load`), batch size dynamic.

ONNX is written by torch's `torch.export`-based exporter (`dynamo=True`, which needs onnxscript), the path torch
supports; a graph that `torch.export` cannot capture (the labelled models check their labels' range in Python,
data-dependent control flow) falls back to torch's TorchScript-based exporter (`dynamo=False`, opset 17), which
traces it instead. Which exporter wrote each graph is recorded. TorchScript graphs are `torch.jit.trace`d.
Every graph is run again after it is written, at batch sizes other than the traced one, and must reproduce
PyTorch's outputs to `TOLERANCE` (absolute plus relative) before the folder is put in place.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaelab.errors import VaelabError
from vaelab.export.graphs import TRACE_BATCH, Graph

TOLERANCE = 1e-5
CHECK_BATCHES = (1, 7)  # the traced batch is graphs.TRACE_BATCH (3): these show the batch is dynamic
LEGACY_OPSET = 17
INSTALL = "pip install vaelab[export]"


class ExportError(VaelabError):
    """A graph could not be written, or does not reproduce PyTorch's outputs."""


def require(*modules: str, what: str) -> None:
    """A one-line error naming the extra to install unless every module is importable.

    Args:
        *modules: import names (onnx, onnxscript, onnxruntime, safetensors).
        what: what needs them, e.g. "--format onnx".
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise VaelabError(f"{what} needs {', '.join(missing)}, which is not installed: {INSTALL}")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Export without torch's tracer and deprecation warnings, the exporter's progress lines on stdout and its
    log lines on stderr (an export that fails says so in one line of ours)."""
    loggers = [
        logging.getLogger(n)
        for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript")
    ]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        sink = io.StringIO()
        with (
            warnings.catch_warnings(),
            torch.no_grad(),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _first_line(e: BaseException) -> str:
    """The root cause's type and first line, without terminal colours."""
    while e.__cause__ is not None:
        e = e.__cause__
    plain = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    text = next((line.strip() for line in plain.splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def write_onnx(graph: Graph, path: Path) -> dict[str, Any]:
    """Write `graph` as ONNX with a dynamic batch dimension; returns the exporter used and its opset.

    Args:
        graph: the part to export.
        path: the .onnx file.
    """
    args = graph.example(TRACE_BATCH)
    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        try:
            program = torch.onnx.export(
                graph.module,
                args,
                dynamo=True,
                input_names=list(graph.inputs),
                output_names=list(graph.outputs),
                dynamic_shapes=(tuple({0: batch} for _ in args),),  # forward(*inputs): one tuple of them
                verbose=False,
            )
            program.save(str(path))
            return {"exporter": "torch.export (dynamo)", "opset": _opset(path)}
        except Exception as first:
            try:
                torch.onnx.export(
                    graph.module,
                    args,
                    str(path),
                    dynamo=False,
                    input_names=list(graph.inputs),
                    output_names=list(graph.outputs),
                    dynamic_axes={n: {0: "batch"} for n in (*graph.inputs, *graph.outputs)},
                    opset_version=LEGACY_OPSET,
                )
            except Exception as second:
                raise ExportError(
                    f"the {graph.part} does not export to ONNX: torch.export: {_first_line(first)}; "
                    f"TorchScript exporter: {_first_line(second)}"
                ) from None
            return {
                "exporter": "TorchScript-based (dynamo=False)",
                "opset": LEGACY_OPSET,
                "why": f"torch.export could not capture it ({_first_line(first)})",
            }


def _opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def run_onnx(path: Path, graph: Graph, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Run an ONNX graph with onnxruntime on the CPU.

    Args:
        path: the .onnx file.
        graph: what it is (its input names).
        inputs: one tensor per input.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {n: t.numpy() for n, t in zip(graph.inputs, inputs)}
    return [torch.from_numpy(o) for o in session.run(list(graph.outputs), feed)]


def write_torchscript(graph: Graph, path: Path) -> dict[str, Any]:
    """Write `graph` as a traced TorchScript module (the batch size stays dynamic: sizes are traced).

    Args:
        graph: the part to export.
        path: the .pt file.
    """
    with _quiet():
        try:
            traced = torch.jit.trace(graph.module, graph.example(TRACE_BATCH), check_trace=False)
            torch.jit.save(traced, str(path))
        except Exception as e:
            raise ExportError(f"the {graph.part} does not trace to TorchScript: {_first_line(e)}") from None
    return {"exporter": "torch.jit.trace"}


def run_torchscript(path: Path, graph: Graph, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Run a TorchScript graph loaded with `torch.jit.load`.

    Args:
        path: the .pt file.
        graph: what it is.
        inputs: one tensor per input.
    """
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, not yet gone
        return list(torch.jit.load(str(path), map_location="cpu")(*inputs))


@dataclass(frozen=True)
class GraphFormat:
    """How a graph format is written, run back, named on disk, and what it needs installed."""

    suffix: str
    write: Callable[[Graph, Path], dict[str, Any]]
    run: Callable[[Path, Graph, tuple[torch.Tensor, ...]], list[torch.Tensor]]
    requires: tuple[str, ...] = ()
    loader: str = ""


GRAPH_FORMATS: dict[str, GraphFormat] = {
    "onnx": GraphFormat(
        ".onnx", write_onnx, run_onnx, ("onnx", "onnxscript", "onnxruntime"), "onnxruntime.InferenceSession"
    ),
    "torchscript": GraphFormat(".pt", write_torchscript, run_torchscript, (), "torch.jit.load"),
}


def check(fmt: GraphFormat, path: Path, graph: Graph) -> float:
    """Run the written graph at `CHECK_BATCHES` and compare with PyTorch; the largest absolute difference.

    Args:
        fmt: the format it was written in.
        path: the written file.
        graph: the part it holds.
    """
    worst = 0.0
    for n in CHECK_BATCHES:
        inputs = graph.example(n)
        with torch.no_grad():
            want = graph.module(*inputs)
        try:
            got = fmt.run(path, graph, inputs)
        except Exception as e:
            raise ExportError(
                f"the written {graph.part} ({path.name}) does not run: {_first_line(e)}"
            ) from None
        for name, w, g in zip(graph.outputs, want, got):
            if tuple(g.shape) != tuple(w.shape):
                raise ExportError(
                    f"the written {graph.part} gives {name} of shape {tuple(g.shape)} for a batch of {n}, "
                    f"PyTorch {tuple(w.shape)}"
                )
            diff = (g.double() - w.double()).abs()
            bound = TOLERANCE + TOLERANCE * w.double().abs()
            if not bool((diff <= bound).all()):
                raise ExportError(
                    f"the written {graph.part} differs from PyTorch in {name} by {float(diff.max()):.3g} "
                    f"(batch of {n}; tolerance {TOLERANCE:g})"
                )
            worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
    return worst
