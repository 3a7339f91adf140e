"""The wake-sleep algorithm (Hinton et al. 1995) and reweighted wake-sleep (Bornschein & Bengio 2015) as
training objectives of a one-latent-layer model (prior / encode / decode).

Wake phase: the generative parameters theta ascend log p_theta(x, z) at z ~ q(z|x), the draws detached, so the
wake term sends no gradient to the recognition model q. Sleep phase: the recognition parameters phi ascend
log q_phi(z|x) on dreams (z, x) ~ p(z) p(x|z), drawn without gradient (the dream's x is a sample of the decoder's
likelihood, binary or continuous), so the sleep term sends no gradient to the generative model. In expectation
the sleep update is the gradient of -E_x~p(x) KL(p(z|x) || q(z|x)): the forward KL, where VI's ELBO uses the
reverse one. Both phases are one loss, -(wake + sleep), whose gradient is exactly the two phases' (the detaches
keep each term to its own parameters), so one optimiser step takes both.

Reweighted wake-sleep draws K codes z_k ~ q(z|x) and weighs them by the self-normalised importance weights
wt_k ∝ p(x, z_k) / q(z_k|x) (held fixed): theta ascends sum_k wt_k log p(x, z_k), the gradient of the IWAE_K
bound for theta, and q ascends the wake-phase update sum_k wt_k log q(z_k|x) plus the sleep-phase update,
averaged: the paper found the wake-phase q update better than the sleep phase alone and both together best, and
used both. K = objective.num_samples (K = 1 makes the wake-phase q update vanish: wt = 1 and
E_q[grad log q] = 0).

Every run reports the same yardstick: the ELBO, its reconstruction and KL terms from the wake draws (without
gradient; the KL analytic or from the draws as objective.kl says), and the forward-KL surrogate "sleep",
log q(z|x) on the dreams. The ELBO and IS numbers of `vaelab eval` score these runs as any other.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn
from torch.distributions import Distribution, kl_divergence

from vaelab.config import ObjectiveConfig
from vaelab.distributions.gaussian import draw_z
from vaelab.distributions.sampling import sample
from vaelab.errors import ConfigError
from vaelab.models.protocol import capabilities, label_kwargs
from vaelab.objectives.elbo import iwae_bound
from vaelab.objectives.registry import Step, register_objective

# The ELBO's settings these objectives have no use for (refused when changed).
ELBO_KNOBS = ("beta", "warmup_epochs", "kl_cycle_epochs", "free_bits", "noise")

__all__ = [
    "ELBO_KNOBS",
    "check_one_layer",
    "dreams",
    "reweighted_wake_sleep_objective",
    "sleep_term",
    "wake_sleep_objective",
    "wake_term",
    "yardstick",
]


def check_one_layer(model: nn.Module, name: str, cfg: ObjectiveConfig) -> None:
    """A ConfigError unless `model` has prior, encode and decode of one latent layer and `cfg` changes none of
    the ELBO's knobs this objective has no use for (beta and its schedules, free bits, input noise).

    Args:
        model: the model to train.
        name: the objective's name, for the message.
        cfg: the objective's settings.
    """
    caps = capabilities(model)
    if not caps.one_latent_layer or caps.own_latent_terms or caps.labelled:
        raise ConfigError(
            f"objective {name} needs an unlabelled model with prior, encode and decode of one latent layer; "
            f"{type(model).__name__} is not one"
        )
    o, d = asdict(cfg), asdict(ObjectiveConfig())
    changed = [f"objective.{k}" for k in ELBO_KNOBS if o[k] != d[k]]
    if changed:
        raise ConfigError(
            f"objective {name} has no KL weight, free bits or input noise: {', '.join(changed)} do not apply"
        )


def wake_term(model: nn.Module, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x, z) = log p(x|z) + log p(z) at draws z [K, B, D], detached: gradient to theta only, [K, B].

    Args:
        model: the model.
        x: the batch [B, C, H, W].
        z: the codes [K, B, D] (from q, or from the posterior by MCMC).
    """
    z = z.detach()
    return model.decode(z).log_prob(x) + model.prior().log_prob(z)


def dreams(model: nn.Module, n: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """n dreams (z, x) ~ p(z) p(x|z) without gradient: z [n, D], x [n, C, H, W] a draw of the likelihood.

    Args:
        model: the model.
        n: how many dreams.
        generator: the random stream of the draws.
    """
    with torch.no_grad():
        z = sample(model.prior(), (n,), generator)
        x = sample(model.decode(z), (), generator)
    return z, x


def sleep_term(model: nn.Module, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """log q(z|x) at n dreams (z, x) ~ p(z) p(x|z): gradient to phi only, [n]; its ascent minimises the forward
    KL(p(z|x) || q(z|x)) averaged over the model's own p(x).

    Args:
        model: the model.
        n: how many dreams.
        generator: the random stream of the dreams.
    """
    z, x = dreams(model, n, generator)
    return model.encode(x).log_prob(z)


def yardstick(
    model: nn.Module, x: torch.Tensor, q: Distribution, z: torch.Tensor, kl: str
) -> dict[str, torch.Tensor]:
    """The ELBO every run reports, from draws z [K, B, D] of q, without gradient: elbo, rec and kl [B].

    Args:
        model: the model.
        x: the batch [B, C, H, W].
        q: q(z|x) of the batch.
        z: the draws of q.
        kl: "analytic" (closed form) or "mc" (log q(z|x) - log p(z) at the draws).
    """
    with torch.no_grad():
        z = z.detach()
        rec = model.decode(z).log_prob(x).mean(0)
        prior = model.prior()
        if kl == "analytic":
            try:
                k = kl_divergence(q, prior)
            except NotImplementedError:
                raise ConfigError("no closed-form KL(q || p) for this model; use objective.kl=mc") from None
        else:
            k = (q.log_prob(z) - prior.log_prob(z)).mean(0)
        k = k.detach()
    return {"elbo": rec - k, "rec": rec, "kl": k}


@register_objective("wake-sleep")
def wake_sleep_objective(
    model: nn.Module,
    x: torch.Tensor,
    cfg: ObjectiveConfig,
    beta: float,
    generator: torch.Generator | None,
    *,
    y: torch.Tensor | None = None,
) -> Step:
    """-(wake + sleep): log p(x, z) at z ~ q(z|x) for theta, log q(z|x) at dreams for phi, batch means.

    cfg.num_samples draws of z per datum are averaged in the wake term; one dream per datum.

    Args:
        model: a one-latent-layer model (prior, encode, decode).
        x: the batch [B, C, H, W].
        cfg: the objective's settings (num_samples, kl for the reported ELBO).
        beta: unused (no KL weight: objective.beta and its schedules are refused).
        generator: the random stream of the draws and the dreams.
        y: unused (label_kwargs refuses a conditional model).
    """
    check_one_layer(model, "wake-sleep", cfg)
    label_kwargs(model, y)
    q = model.encode(x)
    z = draw_z(q, cfg.num_samples, generator).detach()
    wake = wake_term(model, x, z).mean(0)
    sleep = sleep_term(model, len(x), generator)
    loss = -(wake.mean() + sleep.mean())
    return Step(loss, {**yardstick(model, x, q, z, cfg.kl), "sleep": sleep.detach()})


@register_objective("reweighted-wake-sleep")
def reweighted_wake_sleep_objective(
    model: nn.Module,
    x: torch.Tensor,
    cfg: ObjectiveConfig,
    beta: float,
    generator: torch.Generator | None,
    *,
    y: torch.Tensor | None = None,
) -> Step:
    """Reweighted wake-sleep with K = cfg.num_samples: theta ascends sum_k wt_k log p(x, z_k) (the IWAE_K
    gradient for theta), q ascends the mean of the wake-phase update sum_k wt_k log q(z_k|x) and the sleep-phase
    update log q(z|x) at dreams; the weights wt are the normalised p(x, z_k) / q(z_k|x), held fixed.

    Reports the IWAE_K bound of the same draws ("iwae") beside the ELBO and its parts.

    Args:
        model: a one-latent-layer model (prior, encode, decode).
        x: the batch [B, C, H, W].
        cfg: the objective's settings (num_samples = K, kl for the reported ELBO).
        beta: unused (no KL weight).
        generator: the random stream of the draws and the dreams.
        y: unused.
    """
    check_one_layer(model, "reweighted-wake-sleep", cfg)
    label_kwargs(model, y)
    q = model.encode(x)
    z = draw_z(q, cfg.num_samples, generator).detach()
    log_joint = wake_term(model, x, z)  # [K, B], gradient to theta only
    log_q = q.log_prob(z)  # [K, B], gradient to phi only (z is detached)
    log_w = (log_joint - log_q).detach()
    wt = torch.softmax(log_w, dim=0)
    wake_theta = (wt * log_joint).sum(0)
    wake_q = (wt * log_q).sum(0)
    sleep = sleep_term(model, len(x), generator)
    loss = -(wake_theta.mean() + 0.5 * (wake_q.mean() + sleep.mean()))
    stats = yardstick(model, x, q, z, cfg.kl)
    return Step(loss, {"iwae": iwae_bound(log_w), **stats, "sleep": sleep.detach()})
