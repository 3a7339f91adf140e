"""Weight averaging (`train.ema`, `vaelab train --ema DECAY`): an exponential moving average of the weights,
the Polyak-Ruppert average with exponential weights that scores and ships in place of the last step's weights.

After every optimiser step  avg <- d * avg + (1 - d) * theta,  starting from the initial weights, so after k
steps  avg_k = d^k theta_0 + sum_{i=1..k} (1 - d) d^(k-i) theta_i  (theta_i: the weights after step i).
Floating-point buffers are averaged the same way; other buffers (integer counters, boolean flags) are copied.

The arithmetic is torch's own EMA step, `torch._foreach_lerp_(avg, theta, 1 - d)` (what
`torch.optim.swa_utils.get_ema_multi_avg_fn(d)` runs), here over tensor lists built once: `AveragedModel`'s
`update_parameters` rebuilds and regroups its lists and reads its step counter every step (355 against 93 us
per step on the default MNIST VAE, one thread), and it averages integer buffers in float32 and truncates (a
step counter lags: 8 after 12 steps at d = 0.8). `tests/train/test_ema.py` checks the two agree bit for bit
on the floating-point weights. The average lives in a copy of
the model, never trained and in the weights' own dtype: under `train.precision=bf16` autocast leaves the
weights, and so the average, in float32.

Each epoch's validation and test numbers are those of the average (the train_* numbers are the minibatch
losses of the weights being trained), and best.pt is picked on them. A checkpoint's `"model"` holds the
averaged weights, so `vaelab.load`, `vaelab eval`, the figures, the report, `serve` and `export` use them with
no change; `"ema"` holds what training needs to go on: `{"decay", "steps", "raw"}`, `raw` being the weights the
optimiser trains (the state dict of the same model). A resume restores both, so a run stopped and resumed ends
bit for bit where the uninterrupted run ends. Under DDP every rank keeps its own average: the gradients are
all-reduced, so every rank's weights, and so its average, are the same. A model with its own optimiser groups
(the GAN: generator and discriminator) is refused in one line.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from vaelab.errors import CheckpointError, ConfigError
from vaelab.models.protocol import capabilities


class WeightAverage:
    """The exponential moving average of a model's weights with decay `decay`, held in a copy of the model.

    Args:
        model: the model being trained; the average starts at its present weights.
        decay: d in [0, 1): the weight the average keeps at each step.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 <= decay < 1:
            raise ConfigError(f"train.ema must be in [0, 1) (0: no weight averaging), got {decay}")
        self.decay, self.steps = float(decay), 0
        self.module = copy.deepcopy(model).requires_grad_(False)
        mine = {**dict(self.module.named_parameters()), **dict(self.module.named_buffers())}
        theirs = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        pairs = [(mine[k].detach(), theirs[k].detach()) for k in theirs]
        self._avg = [a for a, t in pairs if a.is_floating_point() or a.is_complex()]
        self._src = [t for a, t in pairs if a.is_floating_point() or a.is_complex()]
        self._copy = [a for a, t in pairs if not (a.is_floating_point() or a.is_complex())]
        self._copy_src = [t for a, t in pairs if not (a.is_floating_point() or a.is_complex())]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average: avg <- d * avg + (1 - d) * theta (after each optimiser step)."""
        if self._avg:
            torch._foreach_lerp_(self._avg, self._src, 1.0 - self.decay)
        if self._copy:
            torch._foreach_copy_(self._copy, self._copy_src)
        self.steps += 1

    def entry(self, model: nn.Module) -> dict[str, Any]:
        """The checkpoint's `"ema"`: the decay, the steps averaged and the trained (raw) weights.

        Args:
            model: the model being trained.
        """
        return {"decay": self.decay, "steps": self.steps, "raw": model.state_dict()}

    def load(self, ckpt: dict[str, Any]) -> None:
        """Put back the average a checkpoint holds (its `"model"`) and its step count.

        Args:
            ckpt: a checkpoint written with this decay (`read_checkpoint`).
        """
        entry = ema_entry(ckpt)
        if entry["decay"] != self.decay:
            raise CheckpointError(
                f"the checkpoint averaged with decay {entry['decay']}, this run asks {self.decay}"
            )
        self.module.load_state_dict(ckpt["model"])
        self.steps = int(entry["steps"])


def ema_entry(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's `"ema"` entry, checked (CheckpointError if it lacks one or it is malformed).

    Args:
        ckpt: a checkpoint (`read_checkpoint`).
    """
    entry = ckpt.get("ema")
    if not isinstance(entry, dict) or not {"decay", "steps", "raw"} <= set(entry):
        raise CheckpointError(
            "the checkpoint holds no weight average ('ema' with decay, steps and raw weights) "
            "though its config has train.ema > 0"
        )
    raw = entry["raw"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError("malformed checkpoint ('ema' raw weights are not a dict of tensors)")
    return entry


def raw_weights(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights training goes on from: the raw ones beside an average, else the checkpoint's model.

    Args:
        ckpt: a checkpoint (`read_checkpoint`).
    """
    return ema_entry(ckpt)["raw"] if "ema" in ckpt else ckpt["model"]


def check_averageable(model: nn.Module, model_name: str) -> None:
    """Refuse weight averaging for a model that trains its own optimiser groups against each other (a GAN).

    Args:
        model: the model built for the run.
        model_name: its name (model.name), for the message.
    """
    if capabilities(model).param_groups:
        raise ConfigError(
            f"--ema / train.ema: model '{model_name}' trains its own parameter groups against each other "
            "(a generator and a discriminator), which one average of every weight does not fit; leave --ema out"
        )
