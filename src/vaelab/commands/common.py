"""Shared pieces of the subcommands: their parser and help format, the options every command spells the same
way, opening a run and its data.

This module is imported to build the parser, so it imports nothing heavy: torch and the model code load inside
the functions that need them (`vaelab --help` and `vaelab data list` never import torch).

The shared options (`SHARED_OPTIONS`) mean the same on every subcommand that takes them:
--quiet (no progress bars; every subcommand), --plugin (every subcommand), --device and --threads (those that
run a model), --seed (those that draw random numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.config import Config
from vaelab.errors import ConfigError, DataError, VaelabError
from vaelab.runs import RunDir

if TYPE_CHECKING:
    from torch import nn

    from vaelab.data import Prepared


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every subcommand's help: an option's default once, and a description's indented lines (examples) kept.

    An option shows "(default: X)" unless its help already says its default, or it has none worth showing
    (None, a switch's False, an empty list). A description's paragraphs are filled to the terminal's width,
    except those whose lines are indented: they are shown line for line.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "(default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == []
        ):
            return text
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = re.split(r"\n\s*\n", textwrap.dedent(text).strip("\n"))
        out = []
        for par in paragraphs:
            lines = par.splitlines()
            if all(line.startswith((" ", "\t")) for line in lines):  # an example block: line for line
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(
                    textwrap.fill(
                        " ".join(par.split()), width, initial_indent=indent, subsequent_indent=indent
                    )
                )
        return "\n\n".join(out)


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser; options that need heavy imports can be added when it is first used.

    `defer(fill)` keeps `fill(parser)` until the parser parses or formats its help, so building the whole
    command line (`vaelab --help`) does not import what one subcommand's options are made from.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self._pending: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, fill: Callable[[argparse.ArgumentParser], None]) -> None:
        """Add options later, when the parser is first used.

        Args:
            fill: adds the options to the parser it is given.
        """
        self._pending.append(fill)

    def complete(self) -> CommandParser:
        """Add every deferred option now."""
        while self._pending:
            self._pending.pop(0)(self)
        return self

    def parse_known_args(
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self.complete()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self.complete()
        return super().format_help()

    def format_usage(self) -> str:
        self.complete()
        return super().format_usage()


def defer(p: argparse.ArgumentParser, fill: Callable[[argparse.ArgumentParser], None]) -> None:
    """`fill(p)` when `p` is first used if it is a CommandParser (the `vaelab` command line), else now.

    Args:
        p: a subcommand's parser.
        fill: adds options to it.
    """
    if isinstance(p, CommandParser):
        p.defer(fill)
    else:
        fill(p)


def figure_file(text: str) -> str:
    """argparse type: a figure's --out, whose suffix names a format matplotlib writes (none: PNG).

    Args:
        text: the flag's value as typed.
    """
    from vaelab.viz.grids import figure_format

    try:
        figure_format(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_figure_out(p: argparse.ArgumentParser, default: str) -> None:
    """The figure commands' --out: a picture file whose suffix names its format (`figure_file`).

    Args:
        p: the command's parser.
        default: where the figure goes without --out, as the help says it.
    """
    p.add_argument(
        "--out", type=figure_file, help=f"picture file: .png, .pdf, .svg, .jpg, ... (default {default})"
    )


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1.

    Args:
        text: the flag's value as typed.
    """
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


PLUGIN_HELP = (
    "import a module or .py file that registers models or objectives (vaelab.register_model) first; "
    "repeatable, e.g. --plugin my_models.py"
)

# name -> (flag, argparse keywords). A command adds the ones that apply to it with `add_shared_options`, which
# may reword the help (what --seed seeds) but not the meaning.
SHARED_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "quiet": ("--quiet", {"action": "store_true", "help": "no progress bars"}),
    "plugin": (
        "--plugin",
        {"action": "append", "default": [], "metavar": "MODULE_OR_FILE", "help": PLUGIN_HELP},
    ),
    "device": ("--device", {"default": "cpu", "help": "cpu, cuda, cuda:N or auto"}),
    "threads": (
        "--threads",
        {
            "type": int,
            "default": None,
            "metavar": "N",
            "help": "torch threads (default: torch's, one per core)",
        },
    ),
    "seed": ("--seed", {"type": int, "default": 0, "help": "seed of the random draws"}),
}


def add_shared_options(p: argparse.ArgumentParser, *names: str, **helps: str) -> None:
    """Add shared options to a subcommand's parser, as SHARED_OPTIONS defines them.

    Args:
        p: the subcommand's parser.
        *names: keys of SHARED_OPTIONS, in the order they are listed.
        **helps: a help text per name, where this command says more (e.g. seed="seed of the noise").
    """
    for name in names:
        flag, options = SHARED_OPTIONS[name]
        p.add_argument(flag, **{**options, "help": helps.get(name, options["help"])})


def add_plugin_option(p: argparse.ArgumentParser) -> None:
    """`--plugin MODULE_OR_FILE`, repeatable, on one subcommand's parser.

    Args:
        p: the subcommand's parser.
    """
    add_shared_options(p, "plugin")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The shared run options of the commands that read a run: RUN plus --device, --checkpoint and --data-dir.

    Args:
        p: the command's parser.
    """
    p.add_argument("run", metavar="RUN", help="run folder (or a checkpoint file)")
    add_shared_options(p, "device")
    p.add_argument(
        "--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of the run"
    )
    p.add_argument("--data-dir", default=None, help="where the run's data set lives, if not where it was")


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` inside the block (None: unchanged), as before after it.

    Args:
        threads: the --threads value.
    """
    if threads is None:
        yield
        return
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def with_threads(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command run with torch's threads at its --threads (`torch_threads`).

    Args:
        command: the subcommand's function of its parsed flags.
    """

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        with torch_threads(args.threads):
            return command(args)

    return run


@dataclass
class OpenRun:
    """A trained model with its config, checkpoint path and run folder."""

    model: nn.Module
    config: Config
    checkpoint: Path
    run: RunDir
    shape: tuple[int, int, int]
    epoch: int | None = None  # the checkpoint's epoch

    def split(self, name: str = "test", data_dir: str | None = None) -> Prepared:
        """A split of the run's data on the model's device, drawn as the trainer evaluated it.

        Args:
            name: test, valid or train.
            data_dir: where the data set lives, if not where it was.
        """
        from vaelab.data import prepare_split

        cfg = self.config.data
        if data_dir is not None:
            cfg = self.config.replace(**{"data.data_dir": data_dir}).data
        device = next(self.model.parameters()).device
        data = prepare_split(cfg, name, device)
        if data.shape != self.shape:
            raise DataError(f"{cfg.name} images are {data.shape}, the model was built for {self.shape}")
        return data


def open_run(path: str, device: str = "cpu", which: str = "best") -> OpenRun:
    """Load a run folder (or checkpoint file) for use by a command.

    Args:
        path: a run folder or a checkpoint file.
        device: cpu, cuda, cuda:N or auto.
        which: best or last, the checkpoint of a run folder.
    """
    from vaelab.device import resolve_device
    from vaelab.train.checkpoint import config_of, model_from_checkpoint, read_checkpoint, resolve_checkpoint

    ckpt_path = resolve_checkpoint(path, which)
    ck = read_checkpoint(ckpt_path)
    model = model_from_checkpoint(ck, ckpt_path).to(resolve_device(device)).eval()
    p = Path(path)
    run = RunDir(p if p.is_dir() else ckpt_path.parent.parent)
    return OpenRun(model, config_of(ck, ckpt_path), ckpt_path, run, tuple(ck["shape"]), ck.get("epoch"))


def done(*paths: Path | str) -> None:
    """Every command ends by printing where its outputs are.

    Args:
        *paths: the files written.
    """
    for p in paths:
        print(f"wrote {p}")


def require(cond: bool, message: str) -> None:
    """Raise a one-line user error unless `cond`.

    Args:
        cond: what must hold.
        message: the error's line.
    """
    if not cond:
        raise VaelabError(message)
