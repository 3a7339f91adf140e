"""Monte Carlo EM (Wei & Tanner 1990; the baseline of Kingma & Welling 2014, section 5) as a training objective.

E-step: per datum, a short Hamiltonian Monte Carlo chain on the posterior p_theta(z|x) ∝ p_theta(x|z) p(z) under
the current theta, with the kernel of `vaelab.inference.hmc` (identity mass, Metropolis-corrected). Each
training step runs `objective.num_samples` chains per datum, started at q's mean (no state is kept between
steps: the objective does not see which data a batch holds), for `CHAIN_STEPS` transitions of `LEAPFROG`
leapfrog steps. The step size starts at half q's mean standard deviation, per chain, and is adapted by
Robbins-Monro toward an acceptance of `TARGET_ACCEPT` during the first `WARMUP` transitions, then held fixed;
the last state is the draw. M-step: one gradient step on log p_theta(x, z) at those draws, z detached. With
exact posterior draws its expected gradient is the gradient of log p_theta(x) (Fisher's identity); a short
chain from q's mean is an approximation of that, better as q gets closer to the posterior.

MCEM itself needs no encoder. q(z|x) is trained alongside by the sleep phase of wake-sleep (log q(z|x) at
dreams (z, x) ~ p(z) p(x|z), the forward KL, no gradient to theta), so that it starts the chains near the
posterior and so that the ELBO and importance sampling can score the model as they score every run: the reported
elbo, rec and kl come from q, like every other objective's, with the chains' mean acceptance ("accept") beside
them. In evaluation (no gradient) no chain runs. Each step costs about CHAIN_STEPS * LEAPFROG decoder passes
with their gradients per chain: meant for small training sets, as the paper says.
"""

from __future__ import annotations

import torch
from torch import nn

from vaelab.config import ObjectiveConfig
from vaelab.distributions.gaussian import draw_z
from vaelab.inference import hmc
from vaelab.models.protocol import label_kwargs
from vaelab.objectives.registry import Step, register_objective
from vaelab.objectives.wake_sleep import check_one_layer, sleep_term, wake_term, yardstick

__all__ = [
    "CHAIN_STEPS",
    "LEAPFROG",
    "TARGET_ACCEPT",
    "WARMUP",
    "mcem_objective",
    "mcem_step",
    "posterior_draws",
]

CHAIN_STEPS = 10  # HMC transitions per chain and training step
WARMUP = 5  # of which the first adapt the step size
LEAPFROG = 5  # leapfrog steps per transition
TARGET_ACCEPT = 0.8  # the acceptance the step size is tuned toward


def posterior_draws(
    model: nn.Module,
    x: torch.Tensor,
    num_chains: int,
    generator: torch.Generator | None,
    *,
    steps: int = CHAIN_STEPS,
    warmup: int = WARMUP,
    leapfrog: int = LEAPFROG,
) -> tuple[torch.Tensor, torch.Tensor]:
    """HMC draws from p(z|x) under the current theta: the chains' last states [K, B, D] (no gradient) and the
    mean acceptance after warm-up per datum [B].

    Args:
        model: a one-latent-layer model (prior, encode, decode).
        x: the batch [B, C, H, W].
        num_chains: K, chains per datum, each started at q's mean.
        generator: the random stream of the momenta and accept draws (on x's device).
        steps: HMC transitions per chain.
        warmup: the first transitions, during which the step size adapts (per chain).
        leapfrog: leapfrog steps per transition.
    """
    x = x.detach()
    with torch.no_grad():
        q = model.encode(x)
        start = q.mean.expand(num_chains, *q.mean.shape).clone()
        step_size = 0.5 * q.stddev.mean(-1).expand(num_chains, -1).clone()
        prior = model.prior()

    def log_joint(z: torch.Tensor) -> torch.Tensor:
        return model.decode(z).log_prob(x) + prior.log_prob(z)

    state = hmc.init(start, log_joint)
    accept = torch.zeros(start.shape[:-1], dtype=start.dtype, device=start.device)
    for t in range(steps):
        state, info = hmc.step(generator, state, log_joint, step_size, leapfrog)
        if t < warmup:
            step_size = hmc.adapt_step_size(step_size, info.accept_prob, TARGET_ACCEPT, iteration=t)
        else:
            accept = accept + info.accept_prob
    return state.position, (accept / max(steps - warmup, 1)).mean(0)


def mcem_step(
    model: nn.Module,
    x: torch.Tensor,
    z: torch.Tensor,
    cfg: ObjectiveConfig,
    generator: torch.Generator | None,
) -> Step:
    """The M-step at posterior draws z [K, B, D] plus q's sleep-phase term: -(mean log p(x, z) + mean log q at
    dreams), with the ELBO from one draw of q reported.

    Args:
        model: a one-latent-layer model.
        x: the batch [B, C, H, W].
        z: draws of p(z|x) (by HMC, or exact in tests), detached here.
        cfg: the objective's settings (kl for the reported ELBO).
        generator: the random stream of the dreams and q's draw.
    """
    m = wake_term(model, x, z).mean(0)
    sleep = sleep_term(model, len(x), generator)
    loss = -(m.mean() + sleep.mean())
    q = model.encode(x)
    stats = yardstick(model, x, q, draw_z(q, 1, generator), cfg.kl)
    return Step(loss, {**stats, "sleep": sleep.detach()})


@register_objective("mcem")
def mcem_objective(
    model: nn.Module,
    x: torch.Tensor,
    cfg: ObjectiveConfig,
    beta: float,
    generator: torch.Generator | None,
    *,
    y: torch.Tensor | None = None,
) -> Step:
    """Monte Carlo EM: HMC draws of p(z|x) (objective.num_samples chains per datum), the M-step on log p(x, z)
    at them, and q's sleep-phase term; in evaluation only the ELBO from q.

    Args:
        model: a one-latent-layer model (prior, encode, decode).
        x: the batch [B, C, H, W].
        cfg: the objective's settings (num_samples = chains per datum, kl for the reported ELBO).
        beta: unused (no KL weight).
        generator: the random stream of the chains, the dreams and q's draw.
        y: unused.
    """
    check_one_layer(model, "mcem", cfg)
    label_kwargs(model, y)
    if not torch.is_grad_enabled():  # scoring a split: the yardstick only
        q = model.encode(x)
        return Step(torch.zeros((), device=x.device), yardstick(model, x, q, draw_z(q, 1, generator), cfg.kl))
    z, accept = posterior_draws(model, x, cfg.num_samples, generator)
    step = mcem_step(model, x, z, cfg, generator)
    return Step(step.loss, {**step.stats, "accept": accept})
