"""The evidence lower bound and its relatives, kept apart from the models (as Pyro does).

ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x), with beta weighting the KL term during training
(Higgins et al. 2017) and a linear warm-up of that weight (Sønderby et al. 2016). The KL term is analytic
(torch.distributions.kl_divergence) or a Monte Carlo estimate (`KL_ESTIMATORS`). IWAE_K = E[log mean_k w_k]
(Burda et al. 2016) tightens the bound as K grows (its objective and DReG gradients: `vaelab.objectives.iwae`).
The KL weight follows a linear warm-up or a cyclical schedule (Fu et al. 2019); free bits (Kingma et al. 2016)
stop penalising a latent dimension's KL below lambda nats. All values are per datum in nats: sums over pixels
and latents. Objectives receive the batch's labels as `y=` when the model needs them.

Contract: a one-latent-layer model (`prior` / `encode` / `decode`, `vaelab.models.protocol.OneLatentLayer`) is
scored here; a model with several latent layers scores them itself (`OwnLatentTerms.latent_terms`). What a
model can do is read from `capabilities(model)`, never from its attributes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torch.distributions import kl_divergence

from vaelab.config import ObjectiveConfig
from vaelab.distributions.gaussian import draw_z, factorised, stopped
from vaelab.distributions.logmath import log_mean_exp
from vaelab.errors import ConfigError
from vaelab.models.protocol import LatentTerms, capabilities, label_kwargs
from vaelab.objectives.noise import encoder_input
from vaelab.objectives.registry import OBJECTIVES, Objective, Step, register_objective
from vaelab.registry import Registry

__all__ = [
    "KL_ESTIMATORS",
    "OBJECTIVES",
    "ElboTerms",
    "LatentTerms",
    "Objective",
    "Step",
    "check_schedule",
    "conditioning",
    "draw_z",
    "elbo_objective",
    "elbo_terms",
    "factorised",
    "free_bits_penalty",
    "iwae_bound",
    "kl_weight",
    "latent_terms",
    "reconstruction_objective",
    "stopped",
]

# The keyword arguments that carry labels into a conditional model (the protocol's `label_kwargs`).
conditioning = label_kwargs


class ElboTerms(NamedTuple):
    """Per-datum [B] reconstruction E_q[log p(x|z)], KL(q || p) and ELBO = rec - kl; `groups` [B, G] splits
    the KL into the groups free bits act on (latent dimensions when q and p factorise, else one group)."""

    elbo: torch.Tensor
    rec: torch.Tensor
    kl: torch.Tensor
    groups: torch.Tensor | None = None


def latent_terms(
    model: nn.Module,
    x: torch.Tensor,
    num_samples: int,
    generator: torch.Generator | None,
    *,
    x_enc: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    stop_q: bool = False,
) -> LatentTerms:
    """K reparameterised draws z_k ~ q(z | x_enc) scored against the clean x: log p(x|z_k) and
    log q(z_k|x) - log p(z_k), [K, B] each.

    One-latent-layer models are scored here; a model with its own latent terms (several layers) scores them
    itself (`OwnLatentTerms`).

    Args:
        model: the model.
        x: the batch [B, C, H, W] to score.
        num_samples: K, the draws per datum.
        generator: the random stream of the draws.
        x_enc: what the encoder sees (a corrupted x when denoising); None: x.
        y: the labels, for a conditional model.
        stop_q: detach q's parameters in log q (DReG), never in the draws.
    """
    if capabilities(model).own_latent_terms:
        return model.latent_terms(x, num_samples, generator, x_enc=x_enc, stop_q=stop_q)
    cond = label_kwargs(model, y)
    q = model.encode(x if x_enc is None else x_enc, **cond)
    z = draw_z(q, num_samples, generator)
    rec = model.decode(z, **cond).log_prob(x)
    q_eval = stopped(q) if stop_q else q
    prior = model.prior()
    qb, pb = factorised(q_eval), factorised(prior)
    if qb is not None and pb is not None:
        groups = qb.log_prob(z) - pb.log_prob(z)
        kl = groups.sum(-1)
    else:
        kl = q_eval.log_prob(z) - prior.log_prob(z)
        groups = kl[..., None]
    return LatentTerms(rec, kl, groups, (z,))


def _mc_terms(
    model: nn.Module,
    x: torch.Tensor,
    num_samples: int,
    generator: torch.Generator | None,
    x_enc: torch.Tensor | None,
    y: torch.Tensor | None,
) -> ElboTerms:
    """The Monte Carlo KL: the mean over K draws of log q(z|x) - log p(z)."""
    t = latent_terms(model, x, num_samples, generator, x_enc=x_enc, y=y)
    rec, kl = t.rec.mean(0), t.kl.mean(0)
    return ElboTerms(rec - kl, rec, kl, t.groups.mean(0))


def _analytic_terms(
    model: nn.Module,
    x: torch.Tensor,
    num_samples: int,
    generator: torch.Generator | None,
    x_enc: torch.Tensor | None,
    y: torch.Tensor | None,
) -> ElboTerms:
    """The closed-form KL(q(z|x) || p(z)) of torch.distributions, per dimension when q and p factorise."""
    if not capabilities(model).encode:
        raise ConfigError(f"{type(model).__name__} has no closed-form KL; use objective.kl=mc")
    cond = label_kwargs(model, y)
    q = model.encode(x if x_enc is None else x_enc, **cond)
    z = draw_z(q, num_samples, generator)
    rec = model.decode(z, **cond).log_prob(x).mean(0)
    prior = model.prior()
    qb, pb = factorised(q), factorised(prior)
    try:
        if qb is not None and pb is not None:
            groups = kl_divergence(qb, pb)
            kl = groups.sum(-1)
        else:
            kl = kl_divergence(q, prior)
            groups = kl[..., None]
    except NotImplementedError:
        raise ConfigError(
            f"no closed-form KL between {type(q).__name__} and {type(prior).__name__}; use objective.kl=mc"
        ) from None
    return ElboTerms(rec - kl, rec, kl, groups)


# How the KL term is computed (`objective.kl`): name -> fn(model, x, K, generator, x_enc, y) -> ElboTerms.
KL_ESTIMATORS: Registry[Callable[..., ElboTerms]] = Registry(
    "KL estimator", {"analytic": _analytic_terms, "mc": _mc_terms}
)


def elbo_terms(
    model: nn.Module,
    x: torch.Tensor,
    kl: str = "analytic",
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    *,
    x_enc: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
) -> ElboTerms:
    """The ELBO's two parts averaged over `num_samples` draws of z ~ q(z | x_enc), scored against x.

    Args:
        model: the model.
        x: the batch [B, C, H, W] to score.
        kl: how the KL term is computed, a key of KL_ESTIMATORS ("analytic" or "mc").
        num_samples: draws of z per datum.
        generator: the random stream of the draws.
        x_enc: what the encoder sees (a corrupted x when denoising); None: x.
        y: the labels, for a conditional model.
    """
    return KL_ESTIMATORS.lookup(kl)(model, x, num_samples, generator, x_enc, y)


def free_bits_penalty(model: nn.Module, groups: torch.Tensor, free_bits: float, beta: float) -> torch.Tensor:
    """beta * sum_g relu(lambda - mean_batch KL_g): added to beta * KL it makes beta * sum_g max(lambda, KL_g)
    (Kingma et al. 2016), whose gradient vanishes for groups under lambda. Groups are latent dimensions
    (lambda = free_bits) when q and p factorise, else one group of all D latent dimensions (lambda = free_bits * D).

    Args:
        model: the model (its `capabilities` give D, every latent unit).
        groups: per-datum KL split into groups, [..., G].
        free_bits: lambda per latent dimension, in nats.
        beta: the KL weight of this step.
    """
    g = groups.reshape(-1, groups.shape[-1]).mean(0)
    dims = capabilities(model).total_latent_dim or 1
    lam = free_bits if g.numel() > 1 else free_bits * dims
    return beta * torch.relu(lam - g).sum()


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k w_k from log weights [K, B]: the IWAE bound per datum (K=1 gives the ELBO).

    Args:
        log_w: log importance weights [K, B].
    """
    return log_mean_exp(log_w, dim=0)


@register_objective("elbo")
def elbo_objective(
    model: nn.Module,
    x: torch.Tensor,
    cfg: ObjectiveConfig,
    beta: float,
    generator: torch.Generator | None,
    *,
    y: torch.Tensor | None = None,
) -> Step:
    """-(E_q[log p(x|z)] - beta * KL), averaged over the batch; free bits and input noise when configured.

    Args:
        model: the model.
        x: the batch [B, C, H, W].
        cfg: the objective's settings (kl, num_samples, free_bits, noise).
        beta: the KL weight of this step.
        generator: the random stream of the draws and the noise.
        y: the labels, for a conditional model.
    """
    x_enc = encoder_input(model, x, cfg, generator)
    t = elbo_terms(model, x, cfg.kl, cfg.num_samples, generator, x_enc=x_enc, y=y)
    loss = -(t.rec - beta * t.kl).mean()
    if cfg.free_bits > 0:
        loss = loss + free_bits_penalty(model, t.groups, cfg.free_bits, beta)
    return Step(loss, {"elbo": t.elbo, "rec": t.rec, "kl": t.kl})


@register_objective("reconstruction")
def reconstruction_objective(
    model: nn.Module,
    x: torch.Tensor,
    cfg: ObjectiveConfig,
    beta: float,
    generator: torch.Generator | None,
    *,
    y: torch.Tensor | None = None,
) -> Step:
    """-log p(x | z = f(x)) for deterministic autoencoders (f of the corrupted x when denoising).

    Args:
        model: an autoencoder (encode gives a point mass, decode a likelihood).
        x: the batch [B, C, H, W].
        cfg: the objective's settings (noise).
        beta: unused (no KL term).
        generator: the random stream of the noise.
        y: unused.
    """
    rec = model.decode(model.encode(encoder_input(model, x, cfg, generator)).mean).log_prob(x)
    return Step(-rec.mean(), {"rec": rec})


def kl_weight(cfg: ObjectiveConfig, step: int, steps_per_epoch: int) -> float:
    """beta after `step` optimiser steps: constant, a linear warm-up from 0 over `warmup_epochs`, or cyclical
    (Fu et al. 2019): every `kl_cycle_epochs` the weight restarts at 0 and rises linearly to beta over the
    first `kl_cycle_ramp` share of the cycle, then stays at beta.

    Args:
        cfg: the objective's settings (beta, warmup_epochs, kl_cycle_epochs, kl_cycle_ramp).
        step: optimiser steps taken so far.
        steps_per_epoch: optimiser steps in one epoch.
    """
    if cfg.kl_cycle_epochs > 0:
        cycle = cfg.kl_cycle_epochs * steps_per_epoch
        tau = math.fmod(step, cycle) / cycle
        return cfg.beta * min(1.0, tau / cfg.kl_cycle_ramp)
    if cfg.warmup_epochs <= 0:
        return cfg.beta
    return cfg.beta * min(1.0, (step + 1) / (cfg.warmup_epochs * steps_per_epoch))


def check_schedule(cfg: ObjectiveConfig) -> None:
    """A ConfigError for schedule and free-bits settings that do not make sense.

    Args:
        cfg: the objective's settings.
    """
    if cfg.kl_cycle_epochs > 0 and cfg.warmup_epochs > 0:
        raise ConfigError(
            "choose one KL schedule: objective.warmup_epochs or objective.kl_cycle_epochs, not both"
        )
    named = {
        "beta": cfg.beta,
        "warmup_epochs": cfg.warmup_epochs,
        "kl_cycle_epochs": cfg.kl_cycle_epochs,
        "free_bits": cfg.free_bits,
    }
    for key, value in named.items():
        if not value >= 0:
            raise ConfigError(f"need objective.{key} >= 0, got {value}")
    if not 0 < cfg.kl_cycle_ramp <= 1:
        raise ConfigError(f"objective.kl_cycle_ramp must be in (0, 1], got {cfg.kl_cycle_ramp}")
