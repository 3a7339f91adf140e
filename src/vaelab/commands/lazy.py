"""Names a command module binds when it is imported but loads when first used.

Building the parser imports every command module; their heavy imports (torch, matplotlib, FastAPI, ArviZ) wait
until a command runs, so `vaelab --help`, `vaelab data list` and each `--help` answer at once. A module uses
these where a test or another module reaches the name on it (`monkeypatch.setattr("vaelab.commands.serve.bind",
...)`); elsewhere a plain import inside the function does the same.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any


def lazy_function(path: str) -> Callable[..., Any]:
    """A function that imports `path` ("package.module.name") when called and calls it.

    Args:
        path: the dotted module path and the function's name in it.
    """
    module, _, name = path.rpartition(".")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"`{path}`, imported when first called."
    return call


class LazyModule:
    """A module imported at its first attribute access.

    Args:
        name: the module's dotted name, e.g. "vaelab.train.distributed".
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def _module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._module(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name}>"


def lazy_module(name: str) -> LazyModule:
    """A stand-in for `import name` that imports it when an attribute is first read.

    Args:
        name: the module's dotted name.
    """
    return LazyModule(name)
