"""vaelab: variational autoencoders and the variational inference behind them.

Train (`vaelab.train(config)`), evaluate (`vaelab.evaluate(run)`), load (`vaelab.load(run)`), ask what a model
can do (`vaelab.capabilities(model)`), and add your own models and objectives (`vaelab.register_model`,
`@vaelab.register_objective`, `vaelab.load_plugin`; docs/extending.md). See the README for a tour.
"""

__version__ = "0.1.0"  # first: modules imported below read it

from vaelab.config import Config, DataConfig, ModelConfig, ObjectiveConfig, TrainConfig
from vaelab.evaluate import evaluate
from vaelab.models import VAE, Autoencoder
from vaelab.models.protocol import Capabilities, capabilities
from vaelab.models.registry import ModelSpec, model_config, register_model
from vaelab.objectives import register_objective
from vaelab.plugins import load_plugin
from vaelab.train import TrainResult, load

# `vaelab.train` and `vaelab.evaluate` are the functions (bound after their subpackages are imported).
# `from vaelab.train import X`, `from vaelab.evaluate import X` and `import vaelab.train.loop` still reach the
# subpackages (through sys.modules); only `import vaelab.evaluate.blocks as m` walks the attribute and needs
# `from vaelab.evaluate import blocks as m` instead.
from vaelab.train.loop import train

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
