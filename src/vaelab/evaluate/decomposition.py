"""The ELBO taken apart over a data set: its two parts, its free-energy form, its gap, its latent usage.

ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)) = E_q[log p(x, z)] + H(q(z|x)); both forms are computed and their
agreement reported. The gap log p(x) - ELBO equals KL(q(z|x) || p(z|x)), the central identity of variational
inference, measured here with an importance-sampled log p(x). Also: KL per latent dimension, active units
(Burda et al. 2016: Cov_x(E_q[z_d]) > 0.01), and the mutual information I(x; z) under q (Hoffman & Johnson
2016), estimated with the aggregate posterior q(z) = (1/N) sum_n q(z|x_n) over the evaluated images.
As an estimator (`--decomposition`) it runs on rank 0 after importance sampling, whose per-image log p(x)
gives the gap, and adds the ELBO's two parts to the ELBO's block.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.distributions import Independent, Normal, kl_divergence

from vaelab.data import Prepared
from vaelab.distributions.logmath import log_mean_exp
from vaelab.distributions.sampling import rsample
from vaelab.evaluate.blocks import block_generator
from vaelab.evaluate.estimators import (
    Context,
    Estimate,
    refuse_for_exact,
    register_estimator,
    require,
)
from vaelab.evaluate.loglik import batches_of, mean_and_stderr, require_protocol

ACTIVE_THRESHOLD = 0.01


def _diag_normal(q) -> Normal | None:
    base = q.base_dist if isinstance(q, Independent) else None
    return base if isinstance(base, Normal) else None


def mutual_information(
    loc: torch.Tensor, scale: torch.Tensor, generator: torch.Generator | None, chunk: int = 256
) -> float:
    """I(x; z) under q for diagonal Gaussian posteriors [N, D]: mean_n log q(z_n|x_n) - log q(z_n), z_n ~ q(z|x_n).

    Args:
        loc: posterior means [N, D].
        scale: posterior standard deviations [N, D].
        generator: draws z_n.
        chunk: rows of the [N, N] aggregate-posterior table computed at a time.
    """
    n = len(loc)
    z = loc + scale * torch.randn(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)
    own = Normal(loc, scale).log_prob(z).sum(-1)
    agg = []
    for s in range(0, n, chunk):
        zz = z[s : s + chunk, None, :]  # [c, 1, D] against every posterior [1, N, D]
        agg.append(log_mean_exp(Normal(loc[None], scale[None]).log_prob(zz).sum(-1), dim=1))
    return float((own - torch.cat(agg)).double().mean())


@torch.inference_mode()
def decompose(
    model: nn.Module,
    data: Prepared | torch.Tensor,
    num_samples: int = 10,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
    limit: int | None = None,
    log_px: torch.Tensor | None = None,
    mi_limit: int = 2000,
) -> dict:
    """Per-data-set means (with standard errors) of the ELBO's parts and forms, its gap, and latent usage.

    Args:
        model: a one-latent-layer model (prior, encode, decode).
        data: a prepared split or a float tensor of images.
        num_samples: draws of z per datum for the expectations under q.
        generator: the draws' generator.
        batch_size: data per call.
        limit: only the first `limit` data.
        log_px: per-datum log p(x) on the same images (e.g. by importance sampling): gives the gap.
        mi_limit: the mutual information uses the first `mi_limit` posteriors (its cost is quadratic).
    """
    require_protocol(model, "encode", "decode", "prior", what="the ELBO decomposition")
    prior = model.prior()
    rec, kl, fe, locs, scales, kl_dims = [], [], [], [], [], []
    for x in batches_of(data, batch_size, limit):
        q = model.encode(x)
        z = rsample(q, (num_samples,), generator)
        log_px_z = model.decode(z).log_prob(x)
        rec.append(log_px_z.mean(0))
        try:
            kl.append(kl_divergence(q, prior))
        except NotImplementedError:
            kl.append((q.log_prob(z) - prior.log_prob(z)).mean(0))
        try:
            entropy = q.entropy()
        except NotImplementedError:  # a flow posterior: its entropy is a Monte Carlo term too
            entropy = -q.log_prob(z).mean(0)
        fe.append((log_px_z + prior.log_prob(z)).mean(0) + entropy)
        base_q, base_p = _diag_normal(q), _diag_normal(prior)
        if base_q is not None:
            locs.append(base_q.loc)
            scales.append(base_q.scale)
            if base_p is not None:
                kl_dims.append(kl_divergence(base_q, base_p))
    rec_t, kl_t, fe_t = (torch.cat(v).double().cpu() for v in (rec, kl, fe))
    elbo_t = rec_t - kl_t
    out: dict = {"num_samples": num_samples, "num_images": len(rec_t)}
    for name, values in (("rec", rec_t), ("kl", kl_t), ("elbo", elbo_t), ("free_energy_elbo", fe_t)):
        m, se = mean_and_stderr(values)
        out[name] = m
        out[f"{name}_stderr"] = se
    diff, diff_se = mean_and_stderr(elbo_t - fe_t)
    out["forms_difference"] = diff
    out["forms_difference_stderr"] = diff_se
    if log_px is not None:
        gap, gap_se = mean_and_stderr(log_px.double().cpu()[: len(elbo_t)] - elbo_t)
        out["gap"] = gap
        out["gap_stderr"] = gap_se
        out["gap_means"] = "log p(x) - ELBO = KL(q(z|x) || p(z|x)), log p(x) by importance sampling"
    if locs:
        loc = torch.cat(locs)
        variances = loc.double().var(0).cpu()
        out["active_units"] = int((variances > ACTIVE_THRESHOLD).sum())
        out["latent_dim"] = loc.shape[1]
        out["posterior_mean_variance_per_dim"] = variances.tolist()
        m = min(mi_limit, len(loc))
        out["mutual_information"] = mutual_information(loc[:m], torch.cat(scales)[:m], generator)
        out["mutual_information_images"] = m
        out["mutual_information_max"] = math.log(m)
    if kl_dims:
        out["kl_per_dim"] = torch.cat(kl_dims).double().mean(0).cpu().tolist()
    return out


def refuse(ctx: Context) -> None:
    """The decomposition needs an encoder, a decoder and a prior; an exact model has no use for it.

    Args:
        ctx: the evaluation's context.
    """
    refuse_for_exact(ctx)
    require(ctx.model, ctx.caps, "encode", "decode", "prior", what="the ELBO decomposition")


def _notes(est: Estimate, _meta: Mapping[str, Any]) -> list[str]:
    d = est.extras
    line = (
        f"decomposition: E_q log p(x|z) {d['rec']:.2f}, KL(q||p) {d['kl']:.2f}, ELBO {d['elbo']:.2f} = "
        f"free-energy form {d['free_energy_elbo']:.2f} (difference {d['forms_difference']:.3f} +- "
        f"{d['forms_difference_stderr']:.3f})"
    )
    if "gap" in d:
        line += f", gap log p(x) - ELBO = KL(q(z|x)||p(z|x)) {d['gap']:.2f} +- {d['gap_stderr']:.2f}"
    lines = [line]
    if "active_units" in d:
        lines.append(
            f"active units {d['active_units']} of {d['latent_dim']}, I(x; z) {d['mutual_information']:.2f} nats "
            f"(at most log N = {d['mutual_information_max']:.2f})"
        )
    return lines


@register_estimator(
    "decomposition",
    applies=lambda caps, settings: settings.decomposition,
    refuse=refuse,
    needs=("importance", "elbo"),
    every_rank=False,
    notes=_notes,
    description="the ELBO's parts, forms, gap, active units and I(x; z) (--decomposition)",
)
def decomposition(ctx: Context) -> tuple[Estimate, Estimate]:
    """The decomposition of the evaluated images, and the ELBO's estimate with its two parts added.

    Args:
        ctx: the evaluation's context (after importance sampling and the ELBO).
    """
    g = block_generator(ctx.settings.seed, "decomposition", 0, ctx.device)
    log_px = ctx.estimates["importance"].per_datum
    d = decompose(ctx.model, ctx.data, generator=g, limit=ctx.settings.limit, log_px=log_px)
    extras = {k: v for k, v in d.items() if k not in ("num_samples", "num_images")}
    est = Estimate(
        "decomposition", "", settings={"num_samples": d["num_samples"]}, n=d["num_images"], extras=extras
    )
    elbo = ctx.estimates["elbo"]
    elbo = dataclasses.replace(elbo, extras={**elbo.extras, "rec": d["rec"], "kl": d["kl"]})
    return est, elbo
