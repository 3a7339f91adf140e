"""vaelab: variational autoencoders and the variational inference behind them.

Train (`vaelab.train`), evaluate (`vaelab.evaluate`), load (`vaelab.load`), and the model classes;
see the README for a tour.
"""

from vaelab import evaluate, train  # callable modules: vaelab.train(config), vaelab.evaluate(run)
from vaelab.config import Config, DataConfig, ModelConfig, ObjectiveConfig, TrainConfig
from vaelab.models import VAE, Autoencoder
from vaelab.models.registry import model_config
from vaelab.train import TrainResult, load

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "Autoencoder",
    "Config",
    "DataConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "evaluate",
    "load",
    "model_config",
    "train",
]
