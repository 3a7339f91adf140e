"""torch.compile of the training objective with an eager fallback (`train.compile`).

Compiling can fail at the first call (inductor needs a C++ compiler and supported operations); the run then
says so once and continues eagerly, with the same result as a run that never asked to compile.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn


class Compiled:
    """Calls `torch.compile(module)`; if compiling fails, warns once and calls `module` from then on.

    Args:
        module: the module to compile (the model and its objective, as one).
    """

    def __init__(self, module: nn.Module) -> None:
        self.eager, self.fn = module, torch.compile(module)

    def __call__(self, *args: object) -> Any:
        if self.fn is not self.eager:
            try:
                return self.fn(*args)
            except Exception as e:  # inductor needs a C++ compiler and supported ops; eager always works
                warnings.warn(f"torch.compile failed ({type(e).__name__}); training eagerly", stacklevel=2)
                self.fn = self.eager
        return self.eager(*args)
