"""The non-finite guard: training stops at the first NaN or infinite loss, naming its epoch and step.

Reading a loss on the host costs nothing on the CPU, so there each step is checked before its update; on an
accelerator the losses are gathered and checked every `every` steps (no host sync per step). In a process
group the ranks agree through one all-reduced flag per check, so a loss gone bad on one rank stops (or
restarts) them all together instead of leaving the others waiting in backward until the timeout.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from vaelab.errors import TrainingDiverged
from vaelab.train import distributed


class FiniteWatch:
    """Raises TrainingDiverged at a non-finite loss, naming its epoch, step and the last good checkpoint.

    Args:
        device: where the losses live (the CPU checks each at once).
        where: the last good checkpoint, as text for the message (asked only when stopping).
        every: on an accelerator, how many losses to gather before one check.
    """

    def __init__(self, device: torch.device, where: Callable[[], str], every: int = 50) -> None:
        self.on_host, self.where, self.every = device.type == "cpu", where, every
        self.device = device
        self.pending: list[tuple[torch.Tensor, int, int]] = []

    def add(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        """Check (or queue) one step's loss.

        Args:
            loss: the step's scalar loss.
            epoch: the 1-based epoch, for the message.
            step: the 1-based step within the epoch, for the message.
        """
        if self.on_host:
            value = loss.item()
            if distributed.any_rank(not math.isfinite(value), self.device):
                self._stop(value, epoch, step)
            return
        self.pending.append((loss.detach(), epoch, step))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        """Check every queued loss (at the end of an epoch, before its checkpoint)."""
        if not self.pending:
            return
        values = torch.stack([p[0].float() for p in self.pending]).cpu()
        bad = (~torch.isfinite(values)).nonzero()
        if distributed.any_rank(len(bad) > 0, self.device):
            i = int(bad[0]) if len(bad) else len(self.pending) - 1
            _, epoch, step = self.pending[i]
            self._stop(float(values[i]), epoch, step)
        self.pending.clear()

    def _stop(self, value: float, epoch: int, step: int) -> None:
        what = (
            f"loss became {value}"
            if not math.isfinite(value)
            else "the loss became non-finite on another rank"
        )
        raise TrainingDiverged(
            f"{what} at epoch {epoch}, step {step}; training stopped; last good checkpoint: {self.where()}"
        )
