"""log p(x) by importance sampling, with its standard error, effective sample sizes and the IWAE curve.

log p(x) = log E_q[p(x, z) / q(z|x)] is estimated by log (1/K) sum_k w_k with z_k ~ q(z|x) (Burda et al. 2016
call the same number the IWAE bound; it is a stochastic lower bound that tightens as K grows). The K proposals
are drawn in chunks and combined by a streaming log-sum-exp, so memory stays bounded whatever K is; other
per-image summaries of the weights (the PSIS k-hat) stream through the same pass as `reductions`. Every
model with `log_importance_weights` can be evaluated this way; a conditional model is given each image's
label and estimates log p(x|y).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from vaelab.data import Prepared
from vaelab.device import keep_freed_memory
from vaelab.distributions.logmath import log_mean_exp
from vaelab.errors import ConfigError, DataError, VaelabError
from vaelab.evaluate.blocks import block_generator, blocks, min_block_size, my_blocks, run_blocks
from vaelab.evaluate.estimators import WeightReduction, bits_per_dim, datum_dims, mean_and_stderr, require
from vaelab.models.protocol import capabilities
from vaelab.train import distributed

__all__ = [
    "DEFAULT_CURVE",
    "ImportanceResult",
    "batches_of",
    "bits_per_dim",
    "importance_sampling",
    "mean_and_stderr",
    "require_protocol",
    "split_labels",
]

DEFAULT_CURVE = (1, 5, 50, 500, 5000)


def batches_of(
    data: Prepared | torch.Tensor, batch_size: int, limit: int | None = None
) -> Iterator[torch.Tensor]:
    """Float batches of a prepared split (its fixed draw) or of a float tensor, up to `limit` items.

    Args:
        data: a prepared split or a float tensor of images.
        batch_size: items per batch.
        limit: only the first `limit` items.
    """
    n = len(data) if limit is None else min(limit, len(data))
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        yield data.batch(sl) if isinstance(data, Prepared) else data[sl]


def require_protocol(model: nn.Module, *names: str, what: str) -> None:
    """A clear error when a model lacks what an estimator needs (e.g. the autoencoder has no likelihood).

    Args:
        model: the model.
        *names: what is needed: log_importance_weights, prior, encode, decode.
        what: the estimator, as the message names it.
    """
    require(model, capabilities(model), *names, what=what)


def split_labels(
    model: nn.Module, data: Prepared | torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor | None:
    """The labels a conditional model is evaluated with (given, or the split's own); None for other models.

    Args:
        model: the model.
        data: the split (its labels are the default) or a tensor of images.
        labels: labels given by the caller, or None.
    """
    if not capabilities(model).conditional:
        return None
    if labels is None and isinstance(data, Prepared):
        labels = data.labels
    if labels is None:
        name = data.name if isinstance(data, Prepared) else ""
        raise DataError(
            f"{type(model).__name__} is conditional: log p(x|y) needs the label of every image, and "
            f"{name or 'the data'} has none"
        )
    return labels


class _GroupMeans:
    """Streams log-weights in chunks and averages log-mean-exp over disjoint groups of k (IWAE_k estimates)."""

    def __init__(self, k: int, batch: int, device: torch.device) -> None:
        self.k = k
        self.part = torch.full((batch,), -math.inf, dtype=torch.float64, device=device)
        self.part_n = 0
        self.total = torch.zeros(batch, dtype=torch.float64, device=device)
        self.groups = 0

    def add(self, lw: torch.Tensor) -> None:
        i, c, k = 0, lw.shape[0], self.k
        if self.part_n:
            take = min(k - self.part_n, c)
            self.part = torch.logaddexp(self.part, lw[:take].logsumexp(0))
            self.part_n += take
            i = take
            if self.part_n == k:
                self.total += self.part - math.log(k)
                self.groups += 1
                self.part_n = 0
                self.part.fill_(-math.inf)
        full = (c - i) // k
        if full:
            g = log_mean_exp(lw[i : i + full * k].view(full, k, -1), dim=1)
            self.total += g.sum(0)
            self.groups += full
            i += full * k
        if i < c:
            self.part = lw[i:].logsumexp(0)
            self.part_n = c - i

    def value(self) -> torch.Tensor:
        return self.total / self.groups


@dataclass
class ImportanceResult:
    """Per-datum log p(x) estimates with their diagnostics, and the IWAE_k curve from the same draws.

    Args:
        num_samples: K.
        log_px: [N] per-datum estimates.
        ess: [N] effective sample size (sum w)^2 / sum w^2 of each datum's K weights.
        elbo: [N] mean log-weight: the ELBO estimate from the same draws.
        curve: k -> [N] IWAE_k estimates.
        seconds: wall time.
        dims: dimensions of one image.
        reduced: name -> [N] values of the `reductions` asked for (e.g. "psis": k-hat).
    """

    num_samples: int
    log_px: torch.Tensor
    ess: torch.Tensor
    elbo: torch.Tensor
    curve: dict[int, torch.Tensor] = field(default_factory=dict)
    seconds: float = 0.0
    dims: int = 1
    reduced: dict[str, torch.Tensor] = field(default_factory=dict)

    def summary(self) -> dict:
        """The JSON-able summary that `vaelab eval` writes under "importance"."""
        mean, se = mean_and_stderr(self.log_px)
        curve = {}
        for k, v in sorted(self.curve.items()):
            m, s = mean_and_stderr(v)
            curve[str(k)] = {"log_px": m, "stderr": s}
        return {
            "method": "importance sampling with q(z|x) as proposal (IWAE bound)",
            "num_samples": self.num_samples,
            "log_px": mean,
            "stderr": se,
            "nll": -mean,
            "bits_per_dim": bits_per_dim(-mean, self.dims),
            "ess_mean": float(self.ess.double().mean()),
            "ess_min": float(self.ess.min()),
            "iwae_curve": curve,
            "num_images": len(self.log_px),
            "seconds": self.seconds,
            "per_datum": self.log_px.tolist(),
        }


Reduction = Callable[[int, int, torch.device], WeightReduction]


@torch.inference_mode()
def importance_sampling(
    model: nn.Module,
    data: Prepared | torch.Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    chunk: int = 1000,
    curve: tuple[int, ...] = DEFAULT_CURVE,
    limit: int | None = None,
    max_elements: int = 4096,
    progress: bool = False,
    labels: torch.Tensor | None = None,
    seed: int | None = None,
    reductions: Mapping[str, Reduction] | None = None,
) -> ImportanceResult:
    """Estimate log p(x) for every datum with K = `num_samples` proposals from q(z|x), in bounded memory.

    `chunk` proposals are drawn at a time for a block of `batch_size` data (default: as many as keep
    chunk * batch * the model's `importance_cost` (decoder passes per proposal) under `max_elements`: a few
    thousand rows per decoder call keep the work in cache). The IWAE_k curve is estimated for each k in
    `curve` with k <= K by averaging over the K / k disjoint groups of the same draws.

    Randomness: with `seed`, every block of data draws from its own generator seeded by (seed, block), and
    the blocks are shared among the ranks of a running process group (`vaelab.evaluate.blocks`): the
    per-datum estimates are the same in one process or several. Otherwise `generator` draws for all blocks
    in turn, in this process.

    Args:
        model: a model with `log_importance_weights`.
        data: a prepared split (its fixed draw) or a float tensor of images [N, C, H, W].
        num_samples: K, proposals per datum (>= 1).
        generator: draws for every block in turn (without `seed`).
        batch_size: data per block (default: from `max_elements`).
        chunk: proposals drawn at a time.
        curve: the k of the IWAE_k curve (those <= K).
        limit: only the first `limit` data.
        max_elements: chunk * batch * importance_cost at most, per decoder call.
        progress: draw a progress bar (rank 0).
        labels: a conditional model's labels (default: the split's own); the estimate is then of log p(x|y).
        seed: seed of the per-block generators (instead of `generator`).
        reductions: name -> `factory(num_samples, batch, device)` of a per-datum summary of the log-weights
            (`add(lw [c, B])` per chunk, `value() -> [B]`), streamed through the same pass; the values are in
            the result's `reduced`.
    """
    require_protocol(model, "log_importance_weights", what="importance sampling")
    keep_freed_memory()
    if num_samples < 1:
        raise ConfigError(f"the number of importance samples K must be >= 1, got {num_samples}")
    if seed is not None and generator is not None:
        raise ConfigError("importance_sampling takes a generator or a seed, not both")
    reductions = dict(reductions or {})
    cost = capabilities(model).importance_cost
    chunk = max(1, min(chunk, num_samples, max(1, max_elements // cost)))
    if batch_size is None:
        batch_size = max(1, max_elements // (chunk * cost))
    ks = sorted({k for k in curve if k <= num_samples} | {num_samples})
    n = len(data) if limit is None else min(limit, len(data))
    device = data.images.device if isinstance(data, Prepared) else data.device
    if seed is None:  # consecutive batches of batch_size, all in this process
        parts = [slice(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
        mine = list(enumerate(parts))
    else:
        parts = blocks(n, batch_size, min_size=min_block_size(chunk * cost))
        mine = my_blocks(parts)
    start = time.perf_counter()
    rows = sum(sl.stop - sl.start for _, sl in mine)
    bar = tqdm(
        total=rows * num_samples,
        disable=not progress or not distributed.world().main,
        unit="w",
        unit_scale=True,
        desc=f"IS K={num_samples}",
    )
    ys = split_labels(model, data, labels)

    def one_block(index: int, sl: slice) -> dict[str, torch.Tensor]:
        x = data.batch(sl) if isinstance(data, Prepared) else data[sl]
        g = generator if seed is None else block_generator(seed, "importance", index, x.device)
        cond = {} if ys is None else {"y": ys[sl].to(x.device)}
        b = len(x)
        lse = torch.full((b,), -math.inf, dtype=torch.float64, device=x.device)
        lse2 = lse.clone()
        total = torch.zeros(b, dtype=torch.float64, device=x.device)
        groups = {k: _GroupMeans(k, b, x.device) for k in ks}
        reducers = {name: make(num_samples, b, x.device) for name, make in reductions.items()}
        done = 0
        while done < num_samples:
            c = min(chunk, num_samples - done)
            lw = model.log_importance_weights(x, c, g, **cond).double()
            lse = torch.logaddexp(lse, lw.logsumexp(0))
            lse2 = torch.logaddexp(lse2, (2 * lw).logsumexp(0))
            total += lw.sum(0)
            for acc in (*groups.values(), *reducers.values()):
                acc.add(lw)
            done += c
            bar.update(c * b)
        out = {
            "log_px": lse - math.log(num_samples),
            "ess": torch.exp(2 * lse - lse2),
            "elbo": total / num_samples,
        }
        out.update({f"curve_{k}": gm.value() for k, gm in groups.items()})
        out.update({f"reduced_{name}": r.value() for name, r in reducers.items()})
        return out

    keys = ("log_px", "ess", "elbo", *(f"curve_{k}" for k in ks), *(f"reduced_{r}" for r in reductions))
    if seed is None:
        got = [one_block(i, sl) for i, sl in mine]
        cat = {
            k: torch.cat([p[k].cpu() for p in got]) if got else torch.empty(0, dtype=torch.float64)
            for k in keys
        }
    else:
        cat = run_blocks(parts, one_block, keys, device)
    bar.close()
    if not torch.isfinite(cat["log_px"]).all():
        bad = int((~torch.isfinite(cat["log_px"])).nonzero()[0, 0])
        raise VaelabError(f"importance sampling gave a non-finite log p(x) for datum {bad}")
    return ImportanceResult(
        num_samples=num_samples,
        log_px=cat["log_px"],
        ess=cat["ess"],
        elbo=cat["elbo"],
        curve={k: cat[f"curve_{k}"] for k in ks},
        seconds=time.perf_counter() - start,
        dims=datum_dims(data),
        reduced={name: cat[f"reduced_{name}"] for name in reductions},
    )
