"""Training: the loop and checkpoints."""

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
