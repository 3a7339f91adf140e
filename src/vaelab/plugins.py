"""Users' own models and objectives from outside the package: `--plugin MODULE_OR_FILE` (docs/extending.md).

A plugin is a module on sys.path (`mypackage.models`) or a `.py` file that registers what it defines when it is
imported (`vaelab.register_model`, `@vaelab.register_objective`). Every subcommand takes `--plugin`, and Python
code calls `load_plugin`; loading the same plugin again is a no-op. A plugin that fails to import is one line
naming it, and what it registered before failing is taken back out.

A run remembers where its model came from (the checkpoint's `plugins`), so opening it without that plugin says
which `--plugin` to pass. Opening a run never imports code by itself: a checkpoint is data (weights_only).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from vaelab.errors import ConfigError, VaelabError


class PluginError(ConfigError):
    """A plugin could not be found or imported, or what it registers was refused."""


_LOADED: dict[str, ModuleType] = {}  # key: a file's resolved path, or a module name
PREFIX = "vaelab_plugin_"  # the module name of a plugin file: vaelab_plugin_<stem>_<hash of its path>


def _is_file(source: str) -> bool:
    return source.endswith(".py") or "/" in source or "\\" in source or Path(source).is_file()


def _where(e: BaseException, path: Path | None) -> str:
    """' (line N)' of the plugin's own line that raised, when it is a file (a SyntaxError names its own)."""
    if path is None or isinstance(e, SyntaxError):
        return ""
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == path]
    return f" (line {lines[-1]})" if lines else ""


def _tables() -> tuple[dict, ...]:
    from vaelab.models.registry import MODELS
    from vaelab.objectives import OBJECTIVES

    return MODELS, OBJECTIVES


def _import_file(source: str) -> tuple[str, Path, ModuleType | None]:
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise PluginError(
            f"plugin {source}: " + ("a folder, not a Python file" if path.is_dir() else "no such file")
        )
    for name, module in list(sys.modules.items()):  # imported already under its own name: use that module
        if name.startswith(PREFIX) or not isinstance(module, ModuleType):
            continue  # (the plugins loaded here are in _LOADED)
        file = module.__dict__.get("__file__")
        if file and Path(file).resolve() == path:
            return str(path), path, module
    return str(path), path, None


def load_plugin(source: str) -> ModuleType:
    """Import a plugin (a module name or a path to a .py file) so the models and objectives it registers exist.

    Args:
        source: a dotted module name on sys.path, or the path of a Python file.

    Returns:
        The imported module (the same one when the plugin was loaded before).
    """
    if not isinstance(source, str) or not source.strip():
        raise PluginError(f"plugin {source!r}: expected a module name or the path of a .py file")
    path: Path | None = None
    if _is_file(source):
        key, path, module = _import_file(source)
    else:
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", source):
            raise PluginError(f"plugin {source}: no such file, and not a module name")
        key, module = source, sys.modules.get(source)
    if key in _LOADED:
        return _LOADED[key]
    if module is not None:
        _LOADED[key] = module
        return module
    tables = _tables()
    before = [set(t) for t in tables]
    name = None
    try:
        if path is None:
            module = importlib.import_module(source)
        else:
            digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
            name = f"{PREFIX}{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise PluginError(f"plugin {source}: not a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses and pickling look a module up by name while it runs
            spec.loader.exec_module(module)
    except Exception as e:
        for table, had in zip(tables, before):
            for added in set(table) - had:
                del table[added]
        if name is not None:
            sys.modules.pop(name, None)
        if isinstance(e, PluginError):
            raise
        missing = isinstance(e, ModuleNotFoundError) and e.name is not None
        if missing and path is None and (source == e.name or source.startswith(f"{e.name}.")):
            raise PluginError(
                f"plugin {source}: no module named '{e.name}' (give a module on sys.path or a .py file)"
            ) from None
        if isinstance(e, VaelabError):  # what it registered was refused, e.g. a name already taken
            raise PluginError(f"plugin {source}: {' '.join(str(e).split())}{_where(e, path)}") from None
        text = " ".join(f"{type(e).__name__}: {e}".split())
        raise PluginError(f"plugin {source} does not import: {text}{_where(e, path)}") from None
    from vaelab.models.registry import MODELS, SOURCES

    for added in set(MODELS) - before[0]:
        SOURCES[added] = key
    _LOADED[key] = module
    return module


def load_plugins(sources: Iterable[str] | None) -> list[ModuleType]:
    """`load_plugin` for each source, in order (the command line's repeated `--plugin`).

    Args:
        sources: module names or .py paths; None or empty loads nothing.
    """
    return [load_plugin(s) for s in sources or ()]
