"""Training: the loop (`loop.train`), checkpoints, and the data-parallel session (`distributed`)."""

from vaelab.train.checkpoint import load, read_checkpoint, resolve_checkpoint, save_checkpoint
from vaelab.train.loop import TrainResult, evaluate_split, train

__all__ = [
    "TrainResult",
    "evaluate_split",
    "load",
    "read_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
    "train",
]
