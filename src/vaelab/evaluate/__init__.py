"""Honest numbers: the ELBO, importance-sampled and AIS log p(x), BDMC bounds and the ELBO's decomposition.

`vaelab.evaluate(run_or_model, ...)` (this module is callable) returns the dict that `vaelab eval` writes to
`eval.json`: every estimate with its method, settings, seed, standard error and time.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn
from tqdm import tqdm

from vaelab._callable import make_callable
from vaelab.data import SPLIT_SEED_OFFSET, Prepared, prepare_split
from vaelab.device import keep_freed_memory
from vaelab.errors import ConfigError, DataError, VaelabError
from vaelab.evaluate.blocks import block_generator, min_block_size, my_blocks, run_blocks
from vaelab.evaluate.blocks import blocks as data_blocks
from vaelab.evaluate.classification import classification_error
from vaelab.evaluate.decomposition import decompose
from vaelab.evaluate.loglik import (
    ImportanceResult,
    bits_per_dim,
    importance_sampling,
    mean_and_stderr,
    require_protocol,
)
from vaelab.evaluate.quality import classifier_for, sample_quality, training_codes
from vaelab.inference.ais import SCHEDULES, ais_log_px, bdmc
from vaelab.train import distributed
from vaelab.train.checkpoint import config_of, model_from_checkpoint, read_checkpoint, resolve_checkpoint

__all__ = ["ImportanceResult", "classification_error", "decompose", "evaluate", "importance_sampling"]


def _check_settings(
    importance: int, ais: int, chains: int, leapfrog: int, schedule: str, bdmc_n: int
) -> None:
    if importance < 1:
        raise ConfigError(f"--importance K must be >= 1, got {importance}")
    if ais != 0 and ais < 2:
        raise ConfigError(f"--ais T must be >= 2 intermediate distributions, got {ais}")
    if chains < 1:
        raise ConfigError(f"--chains C must be >= 1, got {chains}")
    if leapfrog < 1:
        raise ConfigError(f"--leapfrog L must be >= 1, got {leapfrog}")
    if bdmc_n < 0:
        raise ConfigError(f"--bdmc N must be >= 0, got {bdmc_n}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown AIS schedule '{schedule}'; choose one of: {', '.join(SCHEDULES)}")


def _ais_summary(
    model: nn.Module,
    data: Prepared,
    steps: int,
    chains: int,
    leapfrog: int,
    schedule: str,
    seed: int,
    limit: int | None,
    progress: bool,
    dims: int,
) -> dict:
    require_protocol(model, "prior", "decode", what="annealed importance sampling")
    start = time.perf_counter()
    n = len(data) if limit is None else min(limit, len(data))
    parts = data_blocks(n, max(1, 2000 // (chains + 2)), min_size=min_block_size(chains + 2))
    mine = my_blocks(parts)
    bar = tqdm(total=steps * len(mine), disable=not _shows(progress), desc=f"AIS T={steps} C={chains}")

    def one_block(index: int, rows: slice) -> dict[str, torch.Tensor]:
        x = data.batch(rows)
        g = block_generator(seed, "ais", index, x.device)
        log_px, run = ais_log_px(model, x, steps, chains, g, schedule, leapfrog, progress=bar)
        spread = run.log_w.std(0) if chains > 1 else torch.zeros(len(x), dtype=torch.float64)
        return {"log_px": log_px, "spread": spread, "accept": run.acceptance, "step": run.step_size}

    out = run_blocks(parts, one_block, ("log_px", "spread", "accept", "step"), data.images.device)
    bar.close()
    log_px = out["log_px"]
    mean, se = mean_and_stderr(log_px)
    return {
        "method": "annealed importance sampling (Neal 2001) with HMC transitions, from the prior",
        "steps": steps,
        "chains": chains,
        "leapfrog": leapfrog,
        "schedule": schedule,
        "log_px": mean,
        "stderr": se,
        "nll": -mean,
        "bits_per_dim": bits_per_dim(-mean, dims),
        "chain_spread": float(out["spread"].mean()),
        "acceptance": float(out["accept"].mean()),
        "final_step_size": float(out["step"].mean()),
        "num_images": len(log_px),
        "seconds": time.perf_counter() - start,
        "per_datum": log_px.tolist(),
    }


def _bdmc_summary(
    model: nn.Module,
    n: int,
    steps: int,
    chains: int,
    leapfrog: int,
    schedule: str,
    seed: int,
    progress: bool,
    device: torch.device,
) -> dict:
    require_protocol(model, "prior", "decode", what="bidirectional Monte Carlo")
    start = time.perf_counter()
    parts = data_blocks(n, max(1, 2000 // (chains + 2)), min_size=min_block_size(chains + 2))
    mine = my_blocks(parts)
    bar = tqdm(total=2 * steps * len(mine), disable=not _shows(progress), desc=f"BDMC T={steps} C={chains}")

    def one_block(index: int, rows: slice) -> dict[str, torch.Tensor]:
        g = block_generator(seed, "bdmc", index, device)
        out = bdmc(model, rows.stop - rows.start, steps, chains, g, schedule, leapfrog, progress=bar)
        return {"lower": out["lower"], "upper": out["upper"]}

    out = run_blocks(parts, one_block, ("lower", "upper"), device)
    bar.close()
    lower, lo_se = mean_and_stderr(out["lower"])
    upper, up_se = mean_and_stderr(out["upper"])
    gap, gap_se = mean_and_stderr(out["upper"] - out["lower"])
    return {
        "method": "bidirectional Monte Carlo (Grosse et al. 2015) on data simulated from the model",
        "num_data": n,
        "steps": steps,
        "chains": chains,
        "leapfrog": leapfrog,
        "schedule": schedule,
        "lower": lower,
        "lower_stderr": lo_se,
        "upper": upper,
        "upper_stderr": up_se,
        "gap": gap,
        "gap_stderr": gap_se,
        "seconds": time.perf_counter() - start,
    }


@torch.inference_mode()
def _exact_summary(model: nn.Module, data: Prepared, limit: int | None, dims: int) -> dict:
    """log p(x) of a model that computes it exactly (an autoregressive model: the chain rule)."""
    start = time.perf_counter()
    n = len(data) if limit is None else min(limit, len(data))
    out = run_blocks(
        data_blocks(n, 200),
        lambda _, rows: {"log_px": model.exact_log_px(data.batch(rows))},
        ("log_px",),
        data.images.device,
    )
    log_px = out["log_px"]
    mean, se = mean_and_stderr(log_px)
    return {
        "method": "exact (chain rule): log p(x) = sum_i log p(x_i | x_<i), no sampling",
        "log_px": mean,
        "stderr": se,
        "nll": -mean,
        "bits_per_dim": bits_per_dim(-mean, dims),
        "num_images": len(log_px),
        "seconds": time.perf_counter() - start,
    }


def _shows(progress: bool) -> bool:
    """Progress bars are drawn by rank 0 alone."""
    return progress and distributed.world().main


def _without_importance(model: nn.Module, ais: int, quality: int) -> bool:
    """True for a model without an importance sampler that is evaluated by what applies to it: a GAN (AIS
    under its observation model, sample quality) or an autoencoder (sample quality)."""
    if hasattr(model, "log_importance_weights"):
        return False
    if not hasattr(model, "encode") and hasattr(model, "decode") and not (ais or quality):
        raise VaelabError(
            f"{type(model).__name__} has no encoder, so importance sampling does not apply: use --ais T "
            "(AIS under its stated observation model, Wu et al. 2017) and/or --quality N"
        )
    return bool(ais or quality)


def evaluate(
    run: str | os.PathLike | nn.Module,
    data: Prepared | None = None,
    *,
    split: str = "test",
    importance: int = 1000,
    ais: int = 0,
    chains: int = 16,
    leapfrog: int = 10,
    schedule: str = "sigmoid",
    bdmc: int = 0,
    decomposition: bool = False,
    limit: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    data_dir: str | None = None,
    which: str = "best",
    progress: bool = False,
    quality: int = 0,
    dist_timeout: float = 1800.0,
) -> dict:
    """Evaluate a run folder, checkpoint or model on a split; returns what `vaelab eval` writes to eval.json.

    IS with `importance` proposals always; AIS with `ais` steps and `chains` chains if ais > 0; BDMC on `bdmc`
    simulated data if bdmc > 0 (with T = ais, or 500); the ELBO decomposition if asked; the classification
    error of models with a classifier q(y|x) (M2). A model with `exact_likelihood` (PixelCNN) gets its exact
    log p(x) instead of IS; a model with a decoder but no encoder (GAN) gets AIS only. With `quality` N, the
    Fréchet distance, precision and recall of N samples against N images of the split (`vaelab.evaluate.quality`).

    Under torchrun (or `vaelab eval --nproc N`) IS, AIS, BDMC and exact log p(x) are shared among the ranks
    in blocks of data that draw from their own seeds (`vaelab.evaluate.blocks`), so every datum gets the
    estimate one process gives it; rank 0 adds the rest (classification, decomposition, quality) and its
    dict is the whole result. `dist_timeout` bounds the rendezvous and each collective, in seconds.
    """
    _check_settings(importance, ais, chains, leapfrog, schedule, bdmc)
    if data is not None and not isinstance(data, Prepared):
        raise ConfigError(
            f"evaluate's data must be a Prepared split (vaelab.data.prepare_split(cfg.data, 'test')), not "
            f"{type(data).__name__}: it carries the images' shape and binarization, which a bare tensor does not"
        )
    if quality < 0:
        raise ConfigError(f"--quality N must be >= 0, got {quality}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    keep_freed_memory()
    w = distributed.world()
    dev = distributed.device_for(device, w)
    with distributed.session(dev, dist_timeout):
        return _evaluate(
            run,
            data,
            split=split,
            importance=importance,
            ais=ais,
            chains=chains,
            leapfrog=leapfrog,
            schedule=schedule,
            bdmc_n=bdmc,
            decomposition=decomposition,
            limit=limit,
            seed=seed,
            dev=dev,
            data_dir=data_dir,
            which=which,
            progress=progress,
            quality=quality,
            w=w,
        )


def _evaluate(
    run: str | os.PathLike | nn.Module,
    data: Prepared | None,
    *,
    split: str,
    importance: int,
    ais: int,
    chains: int,
    leapfrog: int,
    schedule: str,
    bdmc_n: int,
    decomposition: bool,
    limit: int | None,
    seed: int,
    dev: torch.device,
    data_dir: str | None,
    which: str,
    progress: bool,
    quality: int,
    w: distributed.World,
) -> dict:
    started = time.perf_counter()
    info: dict = {"split": split, "seed": seed, "device": str(dev)}
    if w.distributed:
        info["processes"] = w.size
    if isinstance(run, nn.Module):
        if data is None:
            raise ConfigError("evaluate(model) needs the data to evaluate on (a Prepared split)")
        model = run.to(dev).eval()
    else:
        path = resolve_checkpoint(run, which)
        ck = read_checkpoint(path)
        cfg = config_of(ck, path)
        if data_dir is not None:
            cfg = cfg.replace(**{"data.data_dir": data_dir})
        model = model_from_checkpoint(ck, path).to(dev).eval()
        if data is None:
            data = prepare_split(cfg.data, split, dev)
        if data.shape != tuple(ck["shape"]):
            raise DataError(
                f"{cfg.data.name} images are {data.shape}, the model was built for {tuple(ck['shape'])}"
            )
        info.update(
            run=str(run),
            checkpoint=str(path),
            model=cfg.model.name,
            data=cfg.data.name,
            binarize=cfg.data.binarize,
            binarize_seed=cfg.data.binarize_seed + SPLIT_SEED_OFFSET.get(split, 0),
            epoch=ck.get("epoch"),
        )
    n = len(data) if limit is None else min(limit, len(data))
    if w.size > n:
        raise ConfigError(
            f"{w.size} processes but only {n} {split} image(s) to evaluate; use at most {n} processes"
        )
    dims = int(torch.Size(data.shape).numel())
    if quality and isinstance(run, nn.Module):
        raise ConfigError(
            "quality needs a run folder or checkpoint: its feature classifier is trained on the run's data"
        )
    if not getattr(model, "exact_likelihood", False):  # refuse before minutes of importance sampling
        for wanted, what in ((ais, "annealed importance sampling"), (bdmc_n, "bidirectional Monte Carlo")):
            if wanted:
                require_protocol(model, "prior", "decode", what=what)
        if decomposition:
            require_protocol(model, "encode", "decode", "prior", what="the ELBO decomposition")
    res = None
    if getattr(model, "exact_likelihood", False):
        if ais or bdmc_n or decomposition:
            raise ConfigError(
                f"{type(model).__name__} computes log p(x) exactly (chain rule): --ais, --bdmc and --decomposition do not apply"
            )
        info["exact"] = _exact_summary(model, data, limit, dims)
        info["num_images"] = info["exact"]["num_images"]
    elif _without_importance(model, ais, quality):
        describe = getattr(model, "describe_observation", None)
        info["likelihood"] = f"none: {type(model).__name__} defines no p(x)" + (
            f"; AIS scores its {describe()}" if describe is not None else ""
        )
    else:
        res = _importance_parts(info, model, data, importance, seed, limit, progress, dims)
    if ais:
        info["ais"] = _ais_summary(model, data, ais, chains, leapfrog, schedule, seed, limit, progress, dims)
        if hasattr(model, "describe_observation"):
            info["ais"]["observation_model"] = model.describe_observation()
        info.setdefault("num_images", info["ais"]["num_images"])
    if bdmc_n:
        info["bdmc"] = _bdmc_summary(
            model, bdmc_n, ais or 500, chains, leapfrog, schedule, seed, progress, dev
        )
    if not w.main:  # what follows is cheap or needs every image at once: rank 0 alone
        info["seconds"] = time.perf_counter() - started
        return info
    if res is not None and hasattr(model, "classify") and data.labels is not None:
        info["classification"] = classification_error(model, data, limit=limit)
    if res is not None and decomposition:
        g = block_generator(seed, "decomposition", 0, dev)
        dec = decompose(model, data, generator=g, limit=limit, log_px=res.log_px)
        info["decomposition"] = dec
        info["elbo"].update(rec=dec["rec"], kl=dec["kl"])
    if quality:
        codes = None
        if not hasattr(model, "generate") and not hasattr(model, "prior"):
            codes = training_codes(model, prepare_split(cfg.data, "train", dev))
        clf = classifier_for(cfg.data, dev, progress=progress)
        info["quality"] = sample_quality(model, data, clf, quality, seed, train_codes=codes)
        info.setdefault("num_images", quality)
    info["seconds"] = time.perf_counter() - started
    info["versions"] = {"torch": torch.__version__}
    return info


def _importance_parts(
    info: dict,
    model: nn.Module,
    data: Prepared,
    importance: int,
    seed: int,
    limit: int | None,
    progress: bool,
    dims: int,
) -> ImportanceResult:
    """The ELBO and importance-sampled log p(x) into info; the per-datum result."""
    res = importance_sampling(model, data, importance, limit=limit, progress=progress, seed=seed)
    elbo, elbo_se = mean_and_stderr(res.elbo)
    info["num_images"] = len(res.log_px)
    info["elbo"] = {
        "method": f"mean log-weight over the same K = {importance} draws of q(z|x)",
        "estimate": elbo,
        "stderr": elbo_se,
        "nll_bound": -elbo,
        "bits_per_dim": bits_per_dim(-elbo, dims),
    }
    info["importance"] = res.summary()
    if getattr(model, "conditional", False):
        info["importance"]["method"] += ", of log p(x|y) given each image's label"
    return res


make_callable(__name__, evaluate)
