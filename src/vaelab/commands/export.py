"""`vaelab export RUN --format onnx|torchscript|safetensors [--part encoder|decoder|both] --out DIR`: the
model out of vaelab (docs/export.md)."""

from __future__ import annotations

import argparse

from vaelab.commands.common import add_shared_options, done
from vaelab.commands.runtime import say
from vaelab.export import FORMATS, PART_CHOICES


def cmd_export(args: argparse.Namespace) -> int:
    """`vaelab export`: write the graphs or the weights into a new folder, all or nothing.

    Args:
        args: the parsed flags: run, format, part, out, checkpoint, overwrite.
    """
    from vaelab.export.run import export_run

    if (
        args.format is None
    ):  # required, but not by argparse: a parser-wide check feeds every required flag "x"
        args.usage_error("the following arguments are required: --format")
    result = export_run(
        args.run,
        args.out,
        args.format,
        args.part,
        which=args.checkpoint,
        overwrite=args.overwrite,
        note=lambda line: say(f"vaelab export: {line}"),
    )
    done(*result.files)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `vaelab export`.

    Args:
        sub: the `vaelab` command's subparsers.
    """
    p = sub.add_parser(
        "export",
        help="the model as ONNX or TorchScript graphs, or safetensors weights with a model card",
        description="Write a run's model into a new folder: ONNX or TorchScript graphs of the encoder "
        "(x -> q(z|x)'s parameters, e.g. loc and scale) and the decoder (z -> p(x|z)'s, e.g. Bernoulli "
        "logits), with a dynamic batch size, each checked against PyTorch before the folder is put in place; "
        "or the weights as model.safetensors with config.json and a model card (README.md), which "
        "vaelab.load(DIR) reads with no pickle. Parts a model does not have are named in one line.\n\n"
        "  vaelab export runs/mnist2d --format onnx --out exported/onnx\n"
        "  vaelab export runs/mnist2d --format safetensors --out exported/weights",
    )
    p.add_argument("run", metavar="RUN", help="run folder (or a checkpoint file)")
    p.add_argument("--format", choices=FORMATS, help="what to write (required)")
    p.add_argument("--part", choices=PART_CHOICES, default="both", help="which graphs (onnx, torchscript)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (a new one)")
    p.add_argument(
        "--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of the run"
    )
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it already holds files")
    add_shared_options(p, "quiet")
    p.set_defaults(func=cmd_export, usage_error=p.error)
