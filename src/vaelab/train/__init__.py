"""Training: the loop and checkpoints."""

from vaelab._callable import make_callable
from vaelab.train.checkpoint import load, read_checkpoint, resolve_checkpoint, save_checkpoint
from vaelab.train.loop import TrainResult, evaluate_split, train

make_callable(__name__, train)

__all__ = [
    "TrainResult",
    "evaluate_split",
    "load",
    "read_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
    "train",
]
