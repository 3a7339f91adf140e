"""The `vaelab` command: one subcommand per module in `vaelab.commands`.

Each module exposes `register(subparsers)`; its parser sets `func`. Every subcommand also takes
`--plugin MODULE_OR_FILE` (repeatable), imported before the parser is built so that a plugin's models appear
in `--help` and `--model` (`vaelab.plugins`).

Building the parser imports no torch (the command modules import their heavy modules when they run), so
`vaelab --help`, `--version`, each `--help` and `vaelab data list` answer at once.

Exit codes: 0 done; 1 an error meant for the user (`VaelabError`, one line on stderr); 2 bad usage (argparse);
130 interrupted by Ctrl-C (one line, no traceback, at any moment, the imports included); 141 stdout closed
early (`vaelab train ... | head -1`): silently, as a shell reports any program stopped by SIGPIPE.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from vaelab.commands.common import CommandParser, add_plugin_option
from vaelab.commands.runtime import matplotlib_config_dir, say, silence_stdout
from vaelab.errors import VaelabError
from vaelab.plugins import load_plugins

# Order is the order `vaelab --help` lists them in.
COMMAND_MODULES: tuple[str, ...] = (
    "train",
    "eval",
    "viz",
    "analogies",
    "data",
    "configs",
    "report",
    "export",
    "serve",
    "vi",
    "mcmc",
)

EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


class VersionAction(argparse.Action):
    """`--version`: print `vaelab VERSION` (the installed package's, `vaelab.__version__`) and exit 0."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit"
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        import vaelab

        print(f"vaelab {vaelab.__version__}")
        parser.exit()


def build_parser(lazy: bool = False) -> argparse.ArgumentParser:
    """The full argument parser, assembled from every command module (each subcommand with `--plugin`).

    Args:
        lazy: leave the options a subcommand defers (`common.defer`, e.g. eval's, which import torch) until
            that subcommand parses or shows its help; by default every option is added now.
    """
    parser = argparse.ArgumentParser(
        prog="vaelab",
        description="Variational autoencoders and variational inference: train, evaluate, explore.",
    )
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"vaelab.commands.{name}").register(sub)
    for p in _parsers(sub):
        add_plugin_option(p)
        if not lazy:
            p.complete()
    return parser


def _parsers(sub: argparse._SubParsersAction) -> list[CommandParser]:
    """Every subcommand's parser, those of nested actions too (`data`, `data list`, ...)."""
    found = []
    for p in sub.choices.values():
        found.append(p)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += _parsers(action)
    return found


def _early_plugins(argv: list[str]) -> list[str]:
    """The `--plugin` values of a command line, read before the full parser exists."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--plugin", action="append", default=[])
    return early.parse_known_args(argv)[0].plugin


def _fail(command: str | None, e: VaelabError) -> int:
    msg = " ".join(str(e).split("\n"))
    print(f"vaelab{' ' + command if command else ''}: error: {msg}", file=sys.stderr)
    return 1


def _run(argv: list[str], command: str | None) -> int:
    try:
        load_plugins(_early_plugins(argv))
    except VaelabError as e:
        return _fail(command, e)
    args = build_parser(lazy=True).parse_args(argv)
    try:
        load_plugins(args.plugin)  # the same plugins again (a no-op), or an abbreviated --plug
        if isinstance(vars(args).get("out"), str) and not args.out.strip():  # an unset shell variable: the
            # output would land in the current folder or silently in the default place
            raise VaelabError("--out is empty (an unset shell variable?): name the file or folder to write")
        if not vars(args).get("uses_torch", True):
            return int(args.func(args) or 0)
        from vaelab.device import flush_denormals, keep_freed_memory

        keep_freed_memory()
        with flush_denormals():  # set before any parallel region: torch's worker threads inherit it
            return int(args.func(args) or 0)
    except VaelabError as e:
        return _fail(args.command, e)


def _interrupt_handler(command: str | None):
    """SIGINT's handler: a KeyboardInterrupt, except inside an import, where library code can swallow it or be
    left half-initialised (measured: 8 of 80 Ctrl-Cs during torch's import lost or turned into a traceback);
    there the one line and exit 130 at once (files are written by temporary name and rename: nothing is left
    half-written)."""

    def handle(signum: int, frame) -> None:
        f = frame
        while f is not None:
            if f.f_code.co_filename.startswith("<frozen importlib"):
                say(f"vaelab{' ' + command if command else ''}: interrupted")
                os._exit(EXIT_INTERRUPTED)
            f = f.f_back
        raise KeyboardInterrupt

    return handle


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    Args:
        argv: the arguments after `vaelab` (default: sys.argv[1:]).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and not argv[0].startswith("-") else None
    ours = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not when ignored, nor a caller's own
    )
    if ours:
        signal.signal(signal.SIGINT, _interrupt_handler(command))
    try:
        matplotlib_config_dir(os.environ)  # before anything imports matplotlib
        try:
            return _run(argv, command)
        finally:  # --help's SystemExit too: a closed stdout shows here, not in a traceback at exit
            sys.stdout.flush()
    except KeyboardInterrupt:
        say(f"vaelab{' ' + command if command else ''}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE
    finally:
        if ours:  # main() called from Python hands Ctrl-C back as it found it
            signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
