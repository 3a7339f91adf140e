"""Ship a trained model: ONNX and TorchScript graphs of its encoder and decoder, or safetensors weights with
its config and a model card (`vaelab export`; docs/export.md).

`export_run(run, out, format, part)` writes a folder; `load_weights_folder(folder)` reads a safetensors folder
back with no pickle (what `vaelab.load(folder)` does). The graphs are built from the model contract
(`vaelab.models.protocol`): the encoder maps x to q(z|x)'s parameters, the decoder z to p(x|z)'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vaelab.exports import lazy_exports

if TYPE_CHECKING:
    from vaelab.export.run import Exported, export_run
    from vaelab.export.weights import load_weights_folder

# The command line's choices, here so that building the parser imports no torch.
FORMATS = ("onnx", "torchscript", "safetensors")
PART_CHOICES = ("encoder", "decoder", "both")

_PUBLIC = {
    "Exported": "vaelab.export.run",
    "export_run": "vaelab.export.run",
    "load_weights_folder": "vaelab.export.weights",
}
_public = lazy_exports(__name__, _PUBLIC)


def __getattr__(name: str) -> Any:
    return _public(name)


__all__ = ["FORMATS", "PART_CHOICES", "Exported", "export_run", "load_weights_folder"]
