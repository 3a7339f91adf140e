"""The `vaelab` command: one subcommand per module in `vaelab.commands`.

Each module exposes `register(subparsers)`; its parser sets `func`. Every subcommand also takes
`--plugin MODULE_OR_FILE` (repeatable), imported before the parser is built so that a plugin's models appear
in `--help` and `--model` (`vaelab.plugins`). Errors meant for the user (`VaelabError`) print as one line on
stderr with exit code 1; bad usage exits with 2 (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vaelab.device import flush_denormals, keep_freed_memory
from vaelab.errors import VaelabError
from vaelab.plugins import load_plugins

# Order is the order `vaelab --help` lists them in.
COMMAND_MODULES: tuple[str, ...] = ("train", "eval", "viz", "data", "report", "serve", "vi", "mcmc")

PLUGIN_HELP = (
    "import a module or .py file that registers models or objectives (vaelab.register_model) first; "
    "repeatable, e.g. --plugin my_models.py"
)


def add_plugin_option(p: argparse.ArgumentParser) -> None:
    """`--plugin MODULE_OR_FILE`, repeatable, on one subcommand's parser.

    Args:
        p: the subcommand's parser.
    """
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE", help=PLUGIN_HELP)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, assembled from every command module (each subcommand with `--plugin`)."""
    parser = argparse.ArgumentParser(
        prog="vaelab",
        description="Variational autoencoders and variational inference: train, evaluate, explore.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"vaelab.commands.{name}").register(sub)
    for p in sub.choices.values():
        add_plugin_option(p)
    return parser


def _early_plugins(argv: list[str]) -> list[str]:
    """The `--plugin` values of a command line, read before the full parser exists."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--plugin", action="append", default=[])
    return early.parse_known_args(argv)[0].plugin


def _fail(command: str | None, e: VaelabError) -> int:
    msg = " ".join(str(e).split("\n"))
    print(f"vaelab{' ' + command if command else ''}: error: {msg}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    Args:
        argv: the arguments after `vaelab` (default: sys.argv[1:]).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        load_plugins(_early_plugins(argv))
    except VaelabError as e:
        return _fail(argv[0] if argv and not argv[0].startswith("-") else None, e)
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    try:
        load_plugins(args.plugin)  # the same plugins again (a no-op), or an abbreviated --plug
        with flush_denormals():  # set before any parallel region: torch's worker threads inherit it
            code = args.func(args)
    except VaelabError as e:
        return _fail(args.command, e)
    except KeyboardInterrupt:
        print(f"vaelab {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
