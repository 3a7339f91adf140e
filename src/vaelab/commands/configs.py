"""`vaelab configs`: the ready configs that ship inside the package, one line each.

Each is a YAML file in `vaelab/configs/` (the repository's top-level `configs/`); `--config NAME` reads one by
its name from any folder, as a path does (`vaelab.config.find_config_file`). Imports no torch.
"""

from __future__ import annotations

import argparse

from vaelab.commands.common import add_shared_options
from vaelab.config import shipped_configs


def first_comment(text: str) -> str:
    """A config file's one-line description: its first comment line, without the `#`.

    Args:
        text: the file's content.
    """
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and stripped.lstrip("#").strip():
            return stripped.lstrip("#").strip()
    return "(no description)"


def cmd_configs(args: argparse.Namespace) -> int:
    """`vaelab configs`: each shipped config's name and first comment line.

    Args:
        args: the parsed flags (none are read).
    """
    shipped = shipped_configs()
    width = max((len(n) for n in shipped), default=0)
    for name, file in shipped.items():
        print(f"{name:<{width}}  {first_comment(file.read_text(encoding='utf-8'))}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `vaelab configs`.

    Args:
        sub: the `vaelab` command's subparsers.
    """
    p = sub.add_parser(
        "configs",
        help="the ready configs shipped with vaelab, one line each",
        description="The ready configs shipped with vaelab. Train with one by name from any folder: "
        "vaelab train --config NAME (a path to a YAML or JSON file works the same, and is looked for first).",
    )
    add_shared_options(p, "quiet")
    p.set_defaults(func=cmd_configs, uses_torch=False)
