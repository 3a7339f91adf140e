"""The objective as the training loop runs it: the model and its objective as one module (what DDP and
torch.compile wrap), and the objective's mean statistics on a split, the per-epoch validation and test numbers.

Every statistic an objective returns ([B] per datum) is summed over the split and divided by its size; in a
process group each rank scores its share of every batch and the sums are all-reduced.
"""

from __future__ import annotations

import torch
from torch import nn

from vaelab.config import Config, ObjectiveConfig
from vaelab.data import Prepared
from vaelab.data.batches import Share, batch_share
from vaelab.objectives import Objective, Step
from vaelab.train import distributed


def label_args(data: Prepared, index: torch.Tensor | slice, wanted: bool) -> dict[str, torch.Tensor]:
    """`{"y": labels}` of the batch at `index` for models that need labels (their objectives take y=), else {}.

    Args:
        data: the prepared split.
        index: the batch's rows.
        wanted: the model needs labels (its spec's needs_labels).
    """
    return {"y": data.labels_at(index)} if wanted else {}


@torch.inference_mode()
def evaluate_split(
    model: nn.Module, data: Prepared, objective: Objective, cfg: Config, seed: int, labels: bool = False
) -> dict[str, float]:
    """Mean per-datum statistics of the objective (beta = 1) on a fixed draw, with a fixed noise seed
    (and the split's labels, with `labels`).

    Inside a process group every rank scores its share of each batch (noise drawn for the whole batch, so
    each datum's draw is the one-process draw) and the sums are all-reduced: call it on every rank.

    Args:
        model: the model to score.
        data: the prepared split.
        objective: the training objective, whose stats are averaged.
        cfg: the run's config (objective settings, eval_batch_size).
        seed: the seed of the noise draw.
        labels: pass each image's label to the objective.
    """
    was_training = model.training
    model.eval()
    w = distributed.world()
    g = torch.Generator(device=data.images.device).manual_seed(seed)
    sums: dict[str, torch.Tensor] = {}
    size = cfg.train.eval_batch_size
    for start in range(0, len(data), size):
        n = min(size, len(data) - start)
        rows = distributed.shard(n, w)
        if rows.stop == rows.start:  # a last batch smaller than the world: this rank scores nothing of it
            continue
        with batch_share(Share(rows, n) if w.distributed else None):
            index = slice(start + rows.start, start + rows.stop)
            step = objective(
                model, data.batch(index), cfg.objective, 1.0, g, **label_args(data, index, labels)
            )
        for k, v in step.stats.items():
            s = v.double().sum()
            sums[k] = sums[k] + s if k in sums else s
    model.train(was_training)
    if not sums:
        return {}
    totals = distributed.all_reduce_sum(torch.stack(list(sums.values()))).tolist()
    return {k: v / len(data) for k, v in zip(sums, totals)}


class ObjectiveModule(nn.Module):
    """The model and its training objective as one module, so that DDP and torch.compile see the whole loss."""

    def __init__(self, model: nn.Module, objective: Objective, cfg: ObjectiveConfig) -> None:
        super().__init__()
        self.model, self.objective, self.cfg = model, objective, cfg

    def forward(
        self, x: torch.Tensor, beta: float, generator: torch.Generator | None, labels: dict | None = None
    ) -> Step:
        """The objective's step on a batch.

        Args:
            x: the batch.
            beta: the KL weight of this step.
            generator: the noise generator.
            labels: `{"y": labels}` for a model that needs them.
        """
        return self.objective(self.model, x, self.cfg, beta, generator, **(labels or {}))
