"""Callable subpackages: `vaelab.train(config)` and `vaelab.evaluate(run)` while `vaelab.train.loop` stays importable.

Binding the functions over the subpackage names (the obvious way) breaks `import vaelab.train.loop as m`,
because Python resolves that through the attribute `vaelab.train`. Instead the subpackage module itself is
made callable (module `__class__` assignment, supported since Python 3.5).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_callable(module_name: str, fn: Callable[..., Any]) -> None:
    """Calling the module `module_name` calls `fn` with the same arguments."""

    class CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    CallableModule.__call__.__doc__ = fn.__doc__
    sys.modules[module_name].__class__ = CallableModule
