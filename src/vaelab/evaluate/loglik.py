"""log p(x) by importance sampling, with its standard error, effective sample sizes and the IWAE curve.

log p(x) = log E_q[p(x, z) / q(z|x)] is estimated by log (1/K) sum_k w_k with z_k ~ q(z|x) (Burda et al. 2016
call the same number the IWAE bound; it is a stochastic lower bound that tightens as K grows). The K proposals
are drawn in chunks and combined by a streaming log-sum-exp, so memory stays bounded whatever K is. Every
model with `log_importance_weights` can be evaluated this way; a conditional model (`conditional = True`)
is given each image's label and estimates log p(x|y).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from vaelab.data import Prepared
from vaelab.device import keep_freed_memory
from vaelab.errors import ConfigError, DataError, VaelabError
from vaelab.evaluate.blocks import block_generator, blocks, min_block_size, my_blocks, run_blocks
from vaelab.train import distributed

DEFAULT_CURVE = (1, 5, 50, 500, 5000)


def bits_per_dim(nll: float, dims: int) -> float:
    """Negative log-likelihood in nats per image as bits per dimension."""
    return nll / (dims * math.log(2))


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean over data and its standard error (sample std / sqrt(N))."""
    v = values.double()
    se = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se


def batches_of(
    data: Prepared | torch.Tensor, batch_size: int, limit: int | None = None
) -> Iterator[torch.Tensor]:
    """Float batches of a prepared split (its fixed draw) or of a float tensor, up to `limit` items."""
    n = len(data) if limit is None else min(limit, len(data))
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        yield data.batch(sl) if isinstance(data, Prepared) else data[sl]


def require_protocol(model: nn.Module, *names: str, what: str) -> None:
    """A clear error when a model lacks what an estimator needs (e.g. the autoencoder has no likelihood)."""
    missing = [n for n in names if not hasattr(model, n)]
    if missing:
        why = (
            ""
            if hasattr(model, "log_importance_weights")
            else " (a deterministic autoencoder defines no p(x))"
        )
        raise VaelabError(
            f"{what} does not apply to {type(model).__name__}: it has no {', '.join(missing)}{why}"
        )
    if "decode" in names and hasattr(model, "num_classes"):
        raise VaelabError(
            f"{what} does not apply to {type(model).__name__}: its decoder p(x|y,z) also takes a label"
        )


def split_labels(
    model: nn.Module, data: Prepared | torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor | None:
    """The labels a conditional model is evaluated with (given, or the split's own); None for other models."""
    if not getattr(model, "conditional", False):
        return None
    if labels is None and isinstance(data, Prepared):
        labels = data.labels
    if labels is None:
        raise DataError(
            f"{type(model).__name__} is conditional: log p(x|y) needs the label of every image, and "
            f"{getattr(data, 'name', '') or 'the data'} has none"
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
            g = lw[i : i + full * k].view(full, k, -1).logsumexp(1) - math.log(k)
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
    """Per-datum log p(x) estimates with their diagnostics, and the IWAE_k curve from the same draws."""

    num_samples: int
    log_px: torch.Tensor  # [N] per-datum estimates
    ess: torch.Tensor  # [N] effective sample size (sum w)^2 / sum w^2 of each datum's K weights
    elbo: torch.Tensor  # [N] mean log-weight: the ELBO estimate from the same draws
    curve: dict[int, torch.Tensor] = field(default_factory=dict)  # k -> [N] IWAE_k estimates
    seconds: float = 0.0
    dims: int = 1

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
) -> ImportanceResult:
    """Estimate log p(x) for every datum with K = `num_samples` proposals from q(z|x), in bounded memory.

    `chunk` proposals are drawn at a time for a block of `batch_size` data (default: as many as keep
    chunk * batch * the model's `importance_cost` (decoder passes per proposal) under `max_elements`; a few
    thousand rows per decoder call keep the work in cache, which measured twice as fast as 100,000). The
    IWAE_k curve is estimated for each k in `curve` with k <= K by averaging over the K / k disjoint groups
    of the same draws. A conditional model gets `labels` (default: the split's own) and the estimate is of
    log p(x|y).

    Randomness: with `seed`, every block of data draws from its own generator seeded by (seed, block), and
    the blocks are shared among the ranks of a running process group (`vaelab.evaluate.blocks`): the
    per-datum estimates are the same in one process or several. Otherwise `generator` draws for all blocks
    in turn, in this process.
    """
    require_protocol(model, "log_importance_weights", what="importance sampling")
    keep_freed_memory()
    if num_samples < 1:
        raise ConfigError(f"the number of importance samples K must be >= 1, got {num_samples}")
    if seed is not None and generator is not None:
        raise ConfigError("importance_sampling takes a generator or a seed, not both")
    cost = max(1, int(getattr(model, "importance_cost", 1)))
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
        done = 0
        while done < num_samples:
            c = min(chunk, num_samples - done)
            lw = model.log_importance_weights(x, c, g, **cond).double()
            lse = torch.logaddexp(lse, lw.logsumexp(0))
            lse2 = torch.logaddexp(lse2, (2 * lw).logsumexp(0))
            total += lw.sum(0)
            for gm in groups.values():
                gm.add(lw)
            done += c
            bar.update(c * b)
        out = {
            "log_px": lse - math.log(num_samples),
            "ess": torch.exp(2 * lse - lse2),
            "elbo": total / num_samples,
        }
        out.update({f"curve_{k}": gm.value() for k, gm in groups.items()})
        return out

    keys = ("log_px", "ess", "elbo", *(f"curve_{k}" for k in ks))
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
        dims=int(torch.Size(data.shape if isinstance(data, Prepared) else data.shape[1:]).numel()),
    )
