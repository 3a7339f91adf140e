"""The `vaelab` command: one subcommand per module in `vaelab.commands`.

Each module exposes `register(subparsers)`; its parser sets `func`. Errors meant for the user
(`VaelabError`) print as one line on stderr with exit code 1; bad usage exits with 2 (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vaelab.device import flush_denormals, keep_freed_memory
from vaelab.errors import VaelabError

# Order is the order `vaelab --help` lists them in.
COMMAND_MODULES: tuple[str, ...] = ("train", "eval", "viz", "data", "report", "serve", "vi", "mcmc")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, assembled from every command module."""
    parser = argparse.ArgumentParser(
        prog="vaelab",
        description="Variational autoencoders and variational inference: train, evaluate, explore.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"vaelab.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    try:
        with flush_denormals():  # set before any parallel region: torch's worker threads inherit it
            code = args.func(args)
    except VaelabError as e:
        msg = " ".join(str(e).split("\n"))
        print(f"vaelab {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"vaelab {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
