"""The evidence lower bound and its relatives, kept apart from the models (as Pyro does).

ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x), with beta weighting the KL term during training
(Higgins et al. 2017) and a linear warm-up of that weight (Sønderby et al. 2016). The KL term is analytic
(torch.distributions.kl_divergence) or a Monte Carlo estimate. IWAE_K = E[log mean_k w_k] (Burda et al.
2016) tightens the bound as K grows. All values are per datum in nats: sums over pixels and latents.
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
from vaelab.errors import ConfigError

KL_ESTIMATORS = ("analytic", "mc")


class ElboTerms(NamedTuple):
    """Per-datum [B] reconstruction E_q[log p(x|z)], KL(q || p) and ELBO = rec - kl."""

    elbo: torch.Tensor
    rec: torch.Tensor
    kl: torch.Tensor


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


def elbo_terms(
    model: nn.Module,
    x: torch.Tensor,
    kl: str = "analytic",
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> ElboTerms:
    """The ELBO's two parts for a model exposing encode/decode/prior, averaged over `num_samples` draws of z."""
    if kl not in KL_ESTIMATORS:
        raise ConfigError(f"unknown KL estimator '{kl}'; choose one of: {', '.join(KL_ESTIMATORS)}")
    q = model.encode(x)
    z = draw_z(q, num_samples, generator)
    rec = model.decode(z).log_prob(x).mean(0)
    prior = model.prior()
    if kl == "analytic":
        try:
            kl_term = kl_divergence(q, prior)
        except NotImplementedError:
            raise ConfigError(
                f"no closed-form KL between {type(q).__name__} and {type(prior).__name__}; use objective.kl=mc"
            ) from None
    else:
        kl_term = (q.log_prob(z) - prior.log_prob(z)).mean(0)
    return ElboTerms(rec - kl_term, rec, kl_term)


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k w_k from log weights [K, B]: the IWAE bound per datum (K=1 gives the ELBO)."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def elbo_objective(
    model: nn.Module, x: torch.Tensor, cfg: ObjectiveConfig, beta: float, generator: torch.Generator | None
) -> Step:
    """-(E_q[log p(x|z)] - beta * KL), averaged over the batch."""
    t = elbo_terms(model, x, cfg.kl, cfg.num_samples, generator)
    loss = -(t.rec - beta * t.kl).mean()
    return Step(loss, {"elbo": t.elbo, "rec": t.rec, "kl": t.kl})


def reconstruction_objective(
    model: nn.Module, x: torch.Tensor, cfg: ObjectiveConfig, beta: float, generator: torch.Generator | None
) -> Step:
    """-log p(x | z = f(x)) for deterministic autoencoders."""
    rec = model.decode(model.encode(x).mean).log_prob(x)
    return Step(-rec.mean(), {"rec": rec})


Objective = Callable[[nn.Module, torch.Tensor, ObjectiveConfig, float, "torch.Generator | None"], Step]

OBJECTIVES: dict[str, Objective] = {
    "elbo": elbo_objective,
    "reconstruction": reconstruction_objective,
}


def kl_weight(cfg: ObjectiveConfig, step: int, steps_per_epoch: int) -> float:
    """beta after `step` optimiser steps: linear warm-up from 0 over `warmup_epochs`, then constant."""
    if cfg.warmup_epochs <= 0:
        return cfg.beta
    return cfg.beta * min(1.0, (step + 1) / (cfg.warmup_epochs * steps_per_epoch))
