"""Honest numbers: the ELBO, importance-sampled and AIS log p(x), BDMC bounds and the ELBO's decomposition.

`vaelab.evaluate(run_or_model, ...)` (this module is callable) returns the dict that `vaelab eval` writes to
`eval.json`: every estimate with its method, settings, seed, standard error and time.
"""

from __future__ import annotations

import math
import os
import time

import torch
from torch import nn
from tqdm import tqdm

from vaelab._callable import make_callable
from vaelab.data import SPLIT_SEED_OFFSET, Prepared, prepare_split
from vaelab.device import resolve_device
from vaelab.errors import ConfigError, DataError, VaelabError
from vaelab.evaluate.classification import classification_error
from vaelab.evaluate.decomposition import decompose
from vaelab.evaluate.loglik import (
    ImportanceResult,
    batches_of,
    bits_per_dim,
    importance_sampling,
    mean_and_stderr,
    require_protocol,
)
from vaelab.evaluate.quality import classifier_for, sample_quality, training_codes
from vaelab.inference.ais import SCHEDULES, ais_log_px, bdmc
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
    generator: torch.Generator,
    limit: int | None,
    progress: bool,
    dims: int,
) -> dict:
    require_protocol(model, "prior", "decode", what="annealed importance sampling")
    start = time.perf_counter()
    per_batch = max(1, 2000 // (chains + 2))
    n = len(data) if limit is None else min(limit, len(data))
    bar = tqdm(total=steps * math.ceil(n / per_batch), disable=not progress, desc=f"AIS T={steps} C={chains}")
    est, spread, accept, steps_end = [], [], [], []
    for x in batches_of(data, per_batch, limit):
        log_px, run = ais_log_px(model, x, steps, chains, generator, schedule, leapfrog, progress=bar)
        est.append(log_px.cpu())
        spread.append(run.log_w.std(0).cpu() if chains > 1 else torch.zeros(len(x), dtype=torch.float64))
        accept.append(run.acceptance.cpu())
        steps_end.append(run.step_size.double().cpu())
    bar.close()
    log_px = torch.cat(est)
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
        "chain_spread": float(torch.cat(spread).mean()),
        "acceptance": float(torch.cat(accept).mean()),
        "final_step_size": float(torch.cat(steps_end).mean()),
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
    generator: torch.Generator,
    progress: bool,
) -> dict:
    require_protocol(model, "prior", "decode", what="bidirectional Monte Carlo")
    start = time.perf_counter()
    bar = tqdm(total=2 * steps, disable=not progress, desc=f"BDMC T={steps} C={chains}")
    out = bdmc(model, n, steps, chains, generator, schedule, leapfrog, progress=bar)
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
    log_px = torch.cat([model.exact_log_px(x).double().cpu() for x in batches_of(data, 200, limit)])
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
) -> dict:
    """Evaluate a run folder, checkpoint or model on a split; returns what `vaelab eval` writes to eval.json.

    IS with `importance` proposals always; AIS with `ais` steps and `chains` chains if ais > 0; BDMC on `bdmc`
    simulated data if bdmc > 0 (with T = ais, or 500); the ELBO decomposition if asked; the classification
    error of models with a classifier q(y|x) (M2). A model with `exact_likelihood` (PixelCNN) gets its exact
    log p(x) instead of IS; a model with a decoder but no encoder (GAN) gets AIS only. With `quality` N, the
    Fréchet distance, precision and recall of N samples against N images of the split (`vaelab.evaluate.quality`).
    """
    _check_settings(importance, ais, chains, leapfrog, schedule, bdmc)
    if quality < 0:
        raise ConfigError(f"--quality N must be >= 0, got {quality}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    started = time.perf_counter()
    dev = resolve_device(device)
    info: dict = {"split": split, "seed": seed, "device": str(dev)}
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
    g = torch.Generator(device=dev).manual_seed(seed)
    dims = int(torch.Size(data.shape).numel())
    if quality and isinstance(run, nn.Module):
        raise ConfigError(
            "quality needs a run folder or checkpoint: its feature classifier is trained on the run's data"
        )
    if getattr(model, "exact_likelihood", False):
        if ais or bdmc or decomposition:
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
        _importance_parts(info, model, data, importance, g, limit, progress, dims, decomposition)
    if ais:
        info["ais"] = _ais_summary(model, data, ais, chains, leapfrog, schedule, g, limit, progress, dims)
        if hasattr(model, "describe_observation"):
            info["ais"]["observation_model"] = model.describe_observation()
        info.setdefault("num_images", info["ais"]["num_images"])
    if bdmc:
        info["bdmc"] = _bdmc_summary(model, bdmc, ais or 500, chains, leapfrog, schedule, g, progress)
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
    g: torch.Generator,
    limit: int | None,
    progress: bool,
    dims: int,
    decomposition: bool,
) -> None:
    """The ELBO and importance-sampled log p(x) (with the classification error and decomposition) into info."""
    res = importance_sampling(model, data, importance, g, limit=limit, progress=progress)
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
    if hasattr(model, "classify") and data.labels is not None:
        info["classification"] = classification_error(model, data, limit=limit)
    if decomposition:
        dec = decompose(model, data, generator=g, limit=limit, log_px=res.log_px)
        info["decomposition"] = dec
        info["elbo"].update(rec=dec["rec"], kl=dec["kl"])


make_callable(__name__, evaluate)
