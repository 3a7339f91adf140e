"""Data parallelism on PyTorch's own engine: torchrun, torch.distributed (gloo on CPU, NCCL on CUDA) and DDP.

Every rank runs the same loop on a contiguous share of each global batch of one seeded permutation
(`shard`). Each rank draws the random numbers of the *whole* global batch from the shared generator and keeps
its own rows (`vaelab.data.batches.batch_share`), so a datum sees the same binarization and the same eps as in
one process, and DistributedDataParallel's gradient average makes the step that of the global batch.

Evaluation code splits its work with `shard(n)` and combines with `all_reduce_sum` / `gather_cat`; outside
a process group all of these are the identity, so the same code runs in one process. `launch` starts
`nproc` local ranks (what `vaelab train --nproc N` uses) and turns any rank's failure into one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from vaelab.device import resolve_device
from vaelab.errors import ConfigError, VaelabError
from vaelab.train.ranks import explain, quiet_elastic, run_rank

_explain = explain  # the name the tests know


class DistributedError(VaelabError):
    """A rendezvous that did not happen, a rank that died, or a world that does not fit the job."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks: global rank and size, and the same on this node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        """More than one rank."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0

    def __str__(self) -> str:
        return f"rank {self.rank}/{self.size}"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None


def world() -> World:
    """The running process group's world, else the one torchrun's environment (RANK, WORLD_SIZE, ...) names."""
    if dist.is_available() and dist.is_initialized():
        rank, size = dist.get_rank(), dist.get_world_size()
    else:
        rank, size = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_size = _env_int("LOCAL_WORLD_SIZE", size)
    w = World(rank, size, _env_int("LOCAL_RANK", rank % max(local_size, 1)), local_size)
    if w.size < 1 or not 0 <= w.rank < w.size or not 0 <= w.local_rank < max(w.local_size, 1):
        raise ConfigError(f"inconsistent distributed environment: RANK={w.rank}, WORLD_SIZE={w.size}")
    return w


def device_for(name: str, w: World) -> torch.device:
    """The device of this rank: `cuda` means `cuda:LOCAL_RANK` when several ranks share a node.

    Args:
        name: train.device (cpu, cuda, cuda:N, mps or auto).
        w: this process's world.
    """
    dev = resolve_device(name)
    if dev.type == "cuda" and w.distributed:
        if w.local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"{w}: local rank {w.local_rank} needs cuda:{w.local_rank}, this node has "
                f"{torch.cuda.device_count()} CUDA device(s); use --nproc-per-node <= that"
            )
        dev = torch.device("cuda", w.local_rank)
        torch.cuda.set_device(dev)
    return dev


def default_threads(w: World) -> int:
    """Cores this process may use, split evenly among the ranks on this node (at least 1).

    Args:
        w: this process's world (its local_size ranks share the node's cores).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // max(w.local_size, 1))


def start(device: torch.device, timeout: float) -> bool:
    """Join the process group torchrun described (env://); True if this call started it.

    gloo for CPU tensors, NCCL for CUDA. A rendezvous that does not complete within `timeout` seconds
    (a missing MASTER_ADDR, a rank that never comes) is a DistributedError, not a hang.

    Args:
        device: this rank's device (it picks the backend).
        timeout: seconds the rendezvous and each later collective may take.
    """
    w = world()
    if not w.distributed or dist.is_initialized():
        return False
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 but this torch has no torch.distributed")
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise DistributedError(
            f"{w}: WORLD_SIZE={w.size} but {' and '.join(missing)} not set; launch with "
            "`torchrun --nproc-per-node N -m vaelab train ...` or `vaelab train --nproc N ...`"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        dist.init_process_group(
            backend,
            timeout=timedelta(seconds=timeout),
            device_id=device if device.type == "cuda" else None,
        )
    except Exception as e:  # the store and the backends raise many types; all mean the same to the user
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DistributedError(
            f"{w}: no rendezvous of {w.size} ranks at {where} within {timeout:g} s ({first})"
        ) from None
    return True


def stop() -> None:
    """Leave the process group, if one is up."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(device: torch.device, timeout: float) -> Iterator[World]:
    """One distributed session, shared by training and evaluation: join the process group torchrun described
    (if any), leave it at the end, and turn errors into one line that names the rank.

    A VaelabError keeps its type with the rank in front; a lost connection to the other ranks (any of the
    backends' error types) becomes a DistributedError naming its first line.

    Args:
        device: this rank's device (it picks the backend).
        timeout: seconds the rendezvous and each later collective may take.
    """
    w = world()
    started = start(device, timeout)
    try:
        yield w
    except VaelabError as e:
        raise (type(e)(f"{w}: {e}") if w.distributed else e) from None
    except Exception as e:
        if w.distributed and is_comm_error(e):
            first = re.sub(r"^\[[^\]]*\]\s*", "", (str(e).strip().splitlines() or [type(e).__name__])[0])
            raise DistributedError(f"{w}: lost contact with the other ranks ({first[:160]})") from None
        raise
    finally:
        if started:
            stop()


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `module` inside a process group; `module` itself otherwise.

    static_graph lets parameters a step does not use pass without a hang; gradients live in the all-reduce
    buckets (no copy); buffers are re-sent each step only when a module keeps running statistics.

    Args:
        module: the module whose gradients are averaged over the ranks.
        device: this rank's device.
    """
    if not world().distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    has_running_stats = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
    return DistributedDataParallel(
        module,
        device_ids=[device] if device.type == "cuda" else None,
        forward_sync_buffers=has_running_stats,
        gradient_as_bucket_view=True,
        static_graph=True,
    )


def shard(n: int, w: World | None = None) -> slice:
    """This rank's contiguous share of range(n), as torch.tensor_split deals it (sizes differ by at most 1).

    Args:
        n: the number of items to share.
        w: the world (default: this process's).
    """
    w = w or world()
    q, r = divmod(n, w.size)
    begin = w.rank * q + min(w.rank, r)
    return slice(begin, begin + q + (1 if w.rank < r else 0))


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The elementwise sum of `t` over all ranks (a new tensor; `t` itself outside a process group).

    Args:
        t: this rank's tensor (the same shape on every rank).
    """
    if not world().distributed:
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether `flag` is true on any rank (one all-reduced scalar; `flag` itself outside a process group), so
    that every rank takes the same branch: stop, restart, go on.

    Args:
        flag: this rank's answer.
        device: where the collective runs (this rank's device).
    """
    if not world().distributed:
        return flag
    return float(all_reduce_sum(torch.tensor([float(flag)], device=device))) > 0


def gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Every rank's `t` concatenated along dim 0 in rank order; ranks may hold different lengths.

    Args:
        t: this rank's rows.
    """
    w = world()
    if not w.distributed:
        return t
    t = t.detach().contiguous()
    length = torch.tensor([t.shape[0]], device=t.device)
    lengths = [torch.zeros_like(length) for _ in range(w.size)]
    dist.all_gather(lengths, length)
    sizes = [int(x) for x in lengths]
    padded = torch.zeros((max(sizes), *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(w.size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s picklable `obj` on every rank.

    Args:
        obj: the object (read on rank `src` only).
        src: the rank that sends it.
    """
    if not world().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait for every rank (nothing outside a process group)."""
    if world().distributed:
        dist.barrier()


def is_comm_error(e: BaseException) -> bool:
    """True for the errors a collective raises when a peer rank has gone.

    Args:
        e: the exception a collective raised.
    """
    kinds = tuple(  # torch's own error types for a failed collective, where this torch version has them
        k
        for k in (getattr(dist, "DistError", None), getattr(dist, "DistBackendError", None))
        if k is not None
    )
    text = str(e)
    return isinstance(e, kinds) or any(
        s in text for s in ("Connection closed by peer", "Connection reset", "Broken pipe", "gloo", "NCCL")
    )


def launch(
    nproc: int,
    entry: Callable[..., Any],
    args: tuple = (),
    threads: int | None = None,
    shutdown_timeout: int = 10,
) -> dict[int, Any]:
    """Run `entry(*args)` in `nproc` local ranks (torchrun --standalone); return {rank: its result}.

    A rank that raises or dies stops the job: torch elastic terminates the others, and this raises one
    DistributedError naming the cause (`entry` must be importable by name: ranks are spawned).

    Args:
        nproc: the number of ranks.
        entry: the function each rank runs (importable by name).
        args: its arguments (picklable).
        threads: torch threads per rank (default: the cores split among the ranks).
        shutdown_timeout: seconds the other ranks get to stop after one fails.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    cfg = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
        shutdown_timeout=shutdown_timeout,
    )
    env = {"OMP_NUM_THREADS": str(threads or default_threads(World(0, nproc, 0, nproc)))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with tempfile.TemporaryDirectory(prefix="vaelab-ranks-") as message_dir, quiet_elastic():
            try:
                return elastic_launch(cfg, run_rank)(entry, args, message_dir)
            except ChildFailedError as e:
                raise DistributedError(explain(e.failures, message_dir)) from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
