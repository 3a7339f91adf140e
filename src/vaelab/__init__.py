"""vaelab: variational autoencoders and the variational inference behind them.

Train (`vaelab.train(config)`), evaluate (`vaelab.evaluate(run)`), load (`vaelab.load(run)`), ask what a model
can do (`vaelab.capabilities(model)`), and add your own models and objectives (`vaelab.register_model`,
`@vaelab.register_objective`, `vaelab.load_plugin`; docs/extending.md). See the README for a tour.

The public names are imported when first used (PEP 562), so `import vaelab`, and the `vaelab` command for what
needs no model (`--help`, `--version`, `data list`), do not import torch.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from vaelab.exports import lazy_exports

if TYPE_CHECKING:
    from vaelab.config import Config, DataConfig, ModelConfig, ObjectiveConfig, TrainConfig
    from vaelab.evaluate.run import evaluate
    from vaelab.models import VAE, Autoencoder
    from vaelab.models.protocol import Capabilities, capabilities
    from vaelab.models.registry import ModelSpec, model_config, register_model
    from vaelab.objectives import register_objective
    from vaelab.plugins import load_plugin
    from vaelab.train import TrainResult, load
    from vaelab.train.loop import train

    __version__: str

# public name -> the module that defines it
_PUBLIC: dict[str, str] = {
    "Config": "vaelab.config",
    "DataConfig": "vaelab.config",
    "ModelConfig": "vaelab.config",
    "ObjectiveConfig": "vaelab.config",
    "TrainConfig": "vaelab.config",
    "evaluate": "vaelab.evaluate.run",
    "VAE": "vaelab.models.vae",
    "Autoencoder": "vaelab.models.autoencoder",
    "Capabilities": "vaelab.models.protocol",
    "capabilities": "vaelab.models.protocol",
    "ModelSpec": "vaelab.models.registry",
    "model_config": "vaelab.models.registry",
    "register_model": "vaelab.models.registry",
    "register_objective": "vaelab.objectives",
    "load_plugin": "vaelab.plugins",
    "TrainResult": "vaelab.train",
    "load": "vaelab.train",
    "train": "vaelab.train.loop",
}

# `vaelab.train` and `vaelab.evaluate` are the functions, though subpackages of the same names exist.
# `from vaelab.train import X`, `from vaelab.evaluate import X` and `import vaelab.train.loop` still reach the
# subpackages (through sys.modules); only `import vaelab.evaluate.blocks as m` walks the attribute and needs
# `from vaelab.evaluate import blocks as m` instead.
_FUNCTIONS_NAMED_LIKE_SUBPACKAGES = ("train", "evaluate")


def _version() -> str:
    """The installed package's version (pyproject.toml is its one source)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vaelab")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


_public = lazy_exports(__name__, _PUBLIC)


def __getattr__(name: str) -> Any:
    if name != "__version__":
        return _public(name)
    globals()[name] = value = _version()
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The `vaelab` module: importing the `train` or `evaluate` subpackage does not bind it over the function
    of the same name (the import system sets a submodule as an attribute of its package)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FUNCTIONS_NAMED_LIKE_SUBPACKAGES and isinstance(value, types.ModuleType):
            return  # reached through sys.modules; `vaelab.train` stays the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "VAE",
    "Autoencoder",
    "Capabilities",
    "Config",
    "DataConfig",
    "ModelConfig",
    "ModelSpec",
    "ObjectiveConfig",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "capabilities",
    "evaluate",
    "load",
    "load_plugin",
    "model_config",
    "register_model",
    "register_objective",
    "train",
]
