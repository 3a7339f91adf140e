"""Package names loaded on first use (PEP 562): a package's `__init__` lists where each public name lives, and
importing one of its light submodules (a protocol, a settings class) does not import the heavy rest."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package` that imports `where[name]` when `package.name` is first read.

    Args:
        package: the package's dotted name (its `__name__`).
        where: public name -> the dotted module that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module '{package}' has no attribute {name!r}")
        value = vars(importlib.import_module(where[name]))[name]
        setattr(sys.modules[package], name, value)  # found once; later reads are plain attributes
        return value

    return __getattr__
