"""The arithmetic of the training step: `train.precision` names an autocast context (evaluation stays fp32).

`PRECISIONS` maps a name to a factory `device -> context manager` around the forward pass: fp32 runs as
written, bf16 autocasts matrix products to bfloat16 (torch.autocast) while the weights and the optimiser
stay float32.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

import torch

from vaelab.device import native_bf16
from vaelab.registry import Registry

Autocast = Callable[[torch.device], contextlib.AbstractContextManager]
PRECISIONS: Registry[Autocast] = Registry(
    "precision",
    {
        "fp32": lambda device: contextlib.nullcontext(),
        "bf16": lambda device: torch.autocast(device.type, dtype=torch.bfloat16),
    },
)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context the training step's forward pass runs in.

    Args:
        device: where the step runs.
        precision: a key of PRECISIONS (train.precision).
    """
    return PRECISIONS.lookup(precision)(device)


def warn_if_emulated(device: torch.device, precision: str) -> None:
    """Say on stderr when bf16 is asked for on a device without native bf16 arithmetic (it runs emulated).

    Args:
        device: where the step runs.
        precision: a key of PRECISIONS (train.precision).
    """
    if precision == "bf16" and not native_bf16(device):
        print(
            f"vaelab: warning: train.precision=bf16 on {device.type} without native bf16 arithmetic "
            "(AVX512-BF16 or AMX on a CPU): it runs emulated, likely slower than fp32",
            file=sys.stderr,
        )
