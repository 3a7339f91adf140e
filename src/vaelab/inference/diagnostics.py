"""MCMC diagnostics through ArviZ (Vehtari et al. 2021, "Rank-normalization, folding, and localization: an
improved R-hat"): effective sample size, split R-hat across chains, Monte Carlo standard errors, and the
error of a Monte Carlo estimate as the number of draws grows (it falls like 1/sqrt(N), scaled by the
integrated autocorrelation time).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor


def arviz_module() -> Any:
    """ArviZ, imported when first asked for (it is slow to import) without the FutureWarning about its
    refactor that it announces on import."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz
    return arviz


def _dataset(draws: np.ndarray) -> Any:
    return arviz_module().convert_to_dataset({"z": draws})


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ArviZ's own warnings off: a single chain's shape note (logged) and the division by a zero
    within-chain variance of chains that never moved (R-hat inf); the caller says those in its words."""
    arviz = arviz_module()
    log = getattr(arviz, "_log", None) or logging.getLogger("arviz")  # its own Logger, not in getLogger's
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        log.setLevel(level)


def ess(samples: Tensor | np.ndarray, method: str = "bulk") -> np.ndarray:
    """Effective sample size per dimension [D] of draws [C, N, D] (ArviZ, rank-normalised).

    Args:
        samples: draws [C, N, D] (chains, draws per chain, dimensions).
        method: ArviZ's ESS method: bulk, tail, mean, ...
    """
    arviz = arviz_module()
    with _quiet():
        return np.asarray(arviz.ess(_dataset(_numpy(samples)), method=method)["z"].values, dtype=float)


def rhat(samples: Tensor | np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat per dimension [D] of draws [C, N, D]; near 1 when chains agree.

    Args:
        samples: draws [C, N, D] (chains, draws per chain, dimensions).
    """
    arviz = arviz_module()
    with _quiet():
        return np.asarray(arviz.rhat(_dataset(_numpy(samples)))["z"].values, dtype=float)


def summarize(samples: Tensor | np.ndarray, accept_prob: Tensor | np.ndarray | None = None) -> dict[str, Any]:
    """Posterior moments of draws [C, N, D] with their Monte Carlo standard errors and the diagnostics.

    The standard error of the mean is sd / sqrt(ESS_mean) (ArviZ's `mcse(method="mean")`; the bulk ESS is
    rank-normalised and can overstate the mean's); that of the variance is the sd of the squared deviations
    over the square root of their own mean ESS.

    Args:
        samples: draws [C, N, D] (chains, draws per chain, dimensions).
        accept_prob: acceptance probabilities [C, N], or None.
    """
    z = _numpy(samples)
    flat = z.reshape(-1, z.shape[-1])
    mean = flat.mean(0)
    var = flat.var(0, ddof=1)
    sq = (z - mean) ** 2
    ess_bulk = ess(z, "bulk")
    ess_mean = ess(z, "mean")
    ess_sq = ess(sq, "mean")
    out: dict[str, Any] = {
        "mean": mean.tolist(),
        "mean_mcse": (np.sqrt(var / ess_mean)).tolist(),
        "var": var.tolist(),
        "var_mcse": (sq.reshape(-1, z.shape[-1]).std(0, ddof=1) / np.sqrt(ess_sq)).tolist(),
        "cov": np.cov(flat, rowvar=False).reshape(z.shape[-1], z.shape[-1]).tolist(),
        "ess_bulk": ess_bulk.tolist(),
        "ess_mean": ess_mean.tolist(),
        "ess_tail": ess(z, "tail").tolist(),
        "rhat": rhat(z).tolist(),
        "chains": int(z.shape[0]),
        "draws_per_chain": int(z.shape[1]),
    }
    if accept_prob is not None:
        a = _numpy(accept_prob)
        out["acceptance"] = float(a.mean())
        out["acceptance_per_chain"] = a.mean(-1).tolist()
    return out


def error_curve(
    samples: Tensor | np.ndarray, truth_mean: np.ndarray, truth_sd: np.ndarray, num_points: int = 20
) -> dict[str, Any]:
    """The error of the Monte Carlo mean of n consecutive draws, against the exact mean, as n grows.

    Each chain is cut into disjoint windows of n draws; the root-mean-square error of the window means
    (in posterior sds, over windows, chains and dimensions) is the error of an n-draw estimate. Once n is
    well past the integrated autocorrelation time τ = C N / ESS it falls like sqrt(τ / n): the fitted
    log-log slope over n in [2τ, N/4] is about -0.5 (nan when the chains are too short to show it).

    Args:
        samples: draws [C, N, D] (chains, draws per chain, dimensions).
        truth_mean: the exact posterior mean [D].
        truth_sd: the exact posterior sds [D].
        num_points: how many window lengths n, spaced geometrically.
    """
    z = _numpy(samples)
    num_chains, n_draws, dim = z.shape
    tau = num_chains * n_draws / ess(z, "mean")
    n = np.unique(np.geomspace(1, max(1, n_draws // 2), num_points).astype(int))
    rmse = []
    for k in n:
        windows = z[:, : (n_draws // k) * k].reshape(num_chains, -1, k, dim).mean(2)
        rmse.append(float(np.sqrt((((windows - truth_mean) / truth_sd) ** 2).mean())))
    fit = (n >= 2 * tau.mean()) & (n <= n_draws // 4)
    slope = (
        float(np.polyfit(np.log(n[fit]), np.log(np.array(rmse)[fit]), 1)[0]) if fit.sum() >= 3 else math.nan
    )
    return {
        "n": n.tolist(),
        "rmse": rmse,
        "slope": slope,
        "autocorrelation_time": tau.tolist(),
        "predicted_rmse": np.sqrt(tau.mean() / n).tolist(),
    }


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)
