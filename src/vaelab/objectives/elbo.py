"""The evidence lower bound and its relatives, kept apart from the models (as Pyro does).

ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x), with beta weighting the KL term during training
(Higgins et al. 2017) and a linear warm-up of that weight (Sønderby et al. 2016). The KL term is analytic
(torch.distributions.kl_divergence) or a Monte Carlo estimate. IWAE_K = E[log mean_k w_k] (Burda et al.
2016) tightens the bound as K grows (its objective and DReG gradients: `vaelab.objectives.iwae`). The KL weight
follows a linear warm-up or a cyclical schedule (Fu et al. 2019); free bits (Kingma et al. 2016) stop
penalising a latent dimension's KL below lambda nats. All values are per datum in nats: sums over pixels
and latents. Objectives receive the batch's labels as `y=` when the model needs them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from vaelab.config import ObjectiveConfig
from vaelab.data.batches import shared_draw
from vaelab.distributions.sampling import rsample
from vaelab.errors import ConfigError, DataError
from vaelab.objectives.noise import encoder_input

KL_ESTIMATORS = ("analytic", "mc")


class ElboTerms(NamedTuple):
    """Per-datum [B] reconstruction E_q[log p(x|z)], KL(q || p) and ELBO = rec - kl; `groups` [B, G] splits
    the KL into the groups free bits act on (latent dimensions when q and p factorise, else one group)."""

    elbo: torch.Tensor
    rec: torch.Tensor
    kl: torch.Tensor
    groups: torch.Tensor | None = None


class LatentTerms(NamedTuple):
    """K draws of the latents per datum: log p(x|z_k) [K, B], log q(z_k|x) - log p(z_k) [K, B] (so that
    log w_k = rec - kl), the same split into free-bits groups [K, B, G], and the reparameterised draws."""

    rec: torch.Tensor
    kl: torch.Tensor
    groups: torch.Tensor
    latents: tuple[torch.Tensor, ...]


class Step(NamedTuple):
    """A training objective's output: the scalar loss to minimise and per-datum statistics to report."""

    loss: torch.Tensor
    stats: dict[str, torch.Tensor]


def draw_z(q: Distribution, num_samples: int, generator: torch.Generator | None) -> torch.Tensor:
    """z ~ q(z|x), [K, B, D], reparameterised; a Gaussian's eps comes from `shared_draw`, so a datum gets the
    same eps whether its batch runs in one process or split over ranks (DDP)."""
    base = q.base_dist if isinstance(q, Independent) else q
    if generator is None or not isinstance(base, Normal):
        return rsample(q, (num_samples,), generator)
    eps = shared_draw(torch.randn, (num_samples, *base.loc.shape), generator, base.loc, dim=1)
    return base.loc + base.scale * eps


def conditioning(model: nn.Module, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The keyword arguments that carry labels into a conditional model's encode/decode ({} otherwise)."""
    if not getattr(model, "conditional", False):
        return {}
    if y is None:
        raise DataError(f"{type(model).__name__} is conditional: it needs the labels y of every image")
    return {"y": y}


def factorised(dist: Distribution) -> Normal | None:
    """The Normal under an Independent(Normal, 1), i.e. a distribution that factorises over dimensions."""
    base = dist.base_dist if isinstance(dist, Independent) else None
    return base if isinstance(base, Normal) and dist.reinterpreted_batch_ndims == 1 else None


def stopped(q: Distribution) -> Distribution:
    """q with its parameters detached (the same density, no gradient to them): DReG's log q."""
    base = factorised(q)
    if base is None:
        raise ConfigError(f"DReG needs a diagonal Gaussian q(z|x), got {type(q).__name__}")
    return Independent(Normal(base.loc.detach(), base.scale.detach(), validate_args=False), 1)


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
    """K reparameterised draws z_k ~ q(z | x_enc) (x_enc defaults to x) scored against the clean x.

    One-latent-layer models (encode/decode/prior) are handled here; other models (hierarchical) provide
    `latent_terms(x, K, generator, x_enc=, stop_q=)` themselves. `stop_q` detaches q's parameters in log q.
    """
    if hasattr(model, "latent_terms"):
        return model.latent_terms(x, num_samples, generator, x_enc=x_enc, stop_q=stop_q)
    cond = conditioning(model, y)
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
    """The ELBO's two parts averaged over `num_samples` draws of z ~ q(z | x_enc), scored against x."""
    if kl not in KL_ESTIMATORS:
        raise ConfigError(f"unknown KL estimator '{kl}'; choose one of: {', '.join(KL_ESTIMATORS)}")
    if kl == "mc" or not hasattr(model, "encode"):
        if kl == "analytic":
            raise ConfigError(f"{type(model).__name__} has no closed-form KL; use objective.kl=mc")
        t = latent_terms(model, x, num_samples, generator, x_enc=x_enc, y=y)
        rec, kl_term = t.rec.mean(0), t.kl.mean(0)
        return ElboTerms(rec - kl_term, rec, kl_term, t.groups.mean(0))
    cond = conditioning(model, y)
    q = model.encode(x if x_enc is None else x_enc, **cond)
    z = draw_z(q, num_samples, generator)
    rec = model.decode(z, **cond).log_prob(x).mean(0)
    prior = model.prior()
    qb, pb = factorised(q), factorised(prior)
    try:
        if qb is not None and pb is not None:
            groups = kl_divergence(qb, pb)
            kl_term = groups.sum(-1)
        else:
            kl_term = kl_divergence(q, prior)
            groups = kl_term[..., None]
    except NotImplementedError:
        raise ConfigError(
            f"no closed-form KL between {type(q).__name__} and {type(prior).__name__}; use objective.kl=mc"
        ) from None
    return ElboTerms(rec - kl_term, rec, kl_term, groups)


def free_bits_penalty(model: nn.Module, groups: torch.Tensor, free_bits: float, beta: float) -> torch.Tensor:
    """beta * sum_g relu(lambda - mean_batch KL_g): added to beta * KL it makes beta * sum_g max(lambda, KL_g)
    (Kingma et al. 2016), whose gradient vanishes for groups under lambda. Groups are latent dimensions
    (lambda = free_bits) when q and p factorise, else one group of all D latent dimensions (lambda = free_bits * D).
    """
    g = groups.reshape(-1, groups.shape[-1]).mean(0)
    dims = int(getattr(model, "total_latent_dim", getattr(model, "latent_dim", 1)))
    lam = free_bits if g.numel() > 1 else free_bits * dims
    return beta * torch.relu(lam - g).sum()


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k w_k from log weights [K, B]: the IWAE bound per datum (K=1 gives the ELBO)."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def elbo_objective(
    model: nn.Module,
    x: torch.Tensor,
    cfg: ObjectiveConfig,
    beta: float,
    generator: torch.Generator | None,
    *,
    y: torch.Tensor | None = None,
) -> Step:
    """-(E_q[log p(x|z)] - beta * KL), averaged over the batch; free bits and input noise when configured."""
    x_enc = encoder_input(model, x, cfg, generator)
    t = elbo_terms(model, x, cfg.kl, cfg.num_samples, generator, x_enc=x_enc, y=y)
    loss = -(t.rec - beta * t.kl).mean()
    if cfg.free_bits > 0:
        loss = loss + free_bits_penalty(model, t.groups, cfg.free_bits, beta)
    return Step(loss, {"elbo": t.elbo, "rec": t.rec, "kl": t.kl})


def reconstruction_objective(
    model: nn.Module,
    x: torch.Tensor,
    cfg: ObjectiveConfig,
    beta: float,
    generator: torch.Generator | None,
    *,
    y: torch.Tensor | None = None,
) -> Step:
    """-log p(x | z = f(x)) for deterministic autoencoders (f of the corrupted x when denoising)."""
    rec = model.decode(model.encode(encoder_input(model, x, cfg, generator)).mean).log_prob(x)
    return Step(-rec.mean(), {"rec": rec})


# fn(model, x, cfg, beta, generator) -> Step, and `y=labels` as a keyword for models that need labels.
Objective = Callable[..., Step]

OBJECTIVES: dict[str, Objective] = {
    "elbo": elbo_objective,
    "reconstruction": reconstruction_objective,
}


def kl_weight(cfg: ObjectiveConfig, step: int, steps_per_epoch: int) -> float:
    """beta after `step` optimiser steps: constant, a linear warm-up from 0 over `warmup_epochs`, or cyclical
    (Fu et al. 2019): every `kl_cycle_epochs` the weight restarts at 0 and rises linearly to beta over the
    first `kl_cycle_ramp` share of the cycle, then stays at beta."""
    if cfg.kl_cycle_epochs > 0:
        cycle = cfg.kl_cycle_epochs * steps_per_epoch
        tau = math.fmod(step, cycle) / cycle
        return cfg.beta * min(1.0, tau / cfg.kl_cycle_ramp)
    if cfg.warmup_epochs <= 0:
        return cfg.beta
    return cfg.beta * min(1.0, (step + 1) / (cfg.warmup_epochs * steps_per_epoch))


def check_schedule(cfg: ObjectiveConfig) -> None:
    """A ConfigError for schedule and free-bits settings that do not make sense."""
    if cfg.kl_cycle_epochs > 0 and cfg.warmup_epochs > 0:
        raise ConfigError(
            "choose one KL schedule: objective.warmup_epochs or objective.kl_cycle_epochs, not both"
        )
    if cfg.kl_cycle_epochs < 0 or cfg.warmup_epochs < 0 or cfg.free_bits < 0 or cfg.beta < 0:
        raise ConfigError("need objective.beta, warmup_epochs, kl_cycle_epochs and free_bits >= 0")
    if not 0 < cfg.kl_cycle_ramp <= 1:
        raise ConfigError(f"objective.kl_cycle_ramp must be in (0, 1], got {cfg.kl_cycle_ramp}")
