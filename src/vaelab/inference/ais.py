"""Annealed importance sampling (Neal 2001) for decoder-based models, as Wu et al. (2017) evaluate them.

Intermediate targets f_t(z) = p(z) p(x|z)^beta_t anneal from the prior (beta_0 = 0, normaliser 1) to the
unnormalised posterior (beta_T = 1, normaliser p(x)). Each chain starts from an exact prior draw, gains
log f_t(z) - log f_{t-1}(z) = (beta_t - beta_{t-1}) log p(x|z) at every step, and moves by HMC transitions
that leave f_t invariant, with the step size adapted toward acceptance 0.65. C chains per datum are
combined by log-mean-exp: an unbiased estimate of p(x), hence a stochastic lower bound on log p(x).

The step size of each datum is adapted from separate pilot chains whose weights are discarded. Adapting a
chain's step from its own acceptance history makes the kernel depend on the chain's past states and biases
AIS (enough to break BDMC's upper bound). Pilot-driven steps are independent of the counted chains, so no bias.

Run backwards from an exact posterior sample (available for data simulated from the model), the same
procedure gives a stochastic upper bound: bidirectional Monte Carlo (Grosse et al. 2015). The reverse run
takes the forward run's step sizes, reversed, and has no pilots: pilots started at the exact sample would
make its kernels depend on the counted chains' own start, and the bound would no longer be exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from vaelab.distributions.logmath import log_mean_exp
from vaelab.distributions.sampling import sample
from vaelab.errors import ConfigError
from vaelab.inference import hmc
from vaelab.registry import Registry

__all__ = ["SCHEDULES", "AISRun", "ais_log_px", "anneal", "bdmc", "log_mean_exp", "schedule"]

# name -> fn(steps, delta, start) -> betas [T + 1] rising from 0 to 1 (float64; the ends are set exactly).
SCHEDULES: Registry[Callable[[int, float, float], torch.Tensor]] = Registry("AIS schedule")


@SCHEDULES.register("sigmoid")
def _sigmoid(steps: int, delta: float, start: float) -> torch.Tensor:
    """A logistic curve through [-delta, delta] rescaled to [0, 1] (Grosse et al. 2015)."""
    s = torch.sigmoid(delta * (2 * torch.linspace(0, 1, steps + 1, dtype=torch.float64) - 1))
    return (s - s[0]) / (s[-1] - s[0])


@SCHEDULES.register("geometric")
def _geometric(steps: int, delta: float, start: float) -> torch.Tensor:
    """beta_t spaced evenly in log from `start` to 1, after beta_0 = 0."""
    rising = torch.logspace(math.log10(start), 0, steps, dtype=torch.float64)
    return torch.cat([torch.zeros(1, dtype=torch.float64), rising])


@SCHEDULES.register("linear")
def _linear(steps: int, delta: float, start: float) -> torch.Tensor:
    """Evenly spaced."""
    return torch.linspace(0, 1, steps + 1, dtype=torch.float64)


def schedule(steps: int, kind: str = "sigmoid", delta: float = 4.0, start: float = 1e-4) -> torch.Tensor:
    """beta_0 = 0 < beta_1 < ... < beta_T = 1 (float64), of the kind registered in SCHEDULES.

    sigmoid: a logistic curve through [-delta, delta] rescaled to [0, 1] (Grosse et al. 2015);
    geometric: beta_t spaced evenly in log from `start` to 1; linear: evenly spaced.

    Args:
        steps: T, the number of transitions (at least 2).
        kind: a key of SCHEDULES.
        delta: the sigmoid schedule's half-width.
        start: the geometric schedule's beta_1.
    """
    if steps < 2:
        raise ConfigError(f"AIS needs at least 2 intermediate distributions, got T = {steps}")
    betas = SCHEDULES.lookup(kind)(steps, delta, start)
    betas[0], betas[-1] = 0.0, 1.0
    return betas


@dataclass
class AISRun:
    """Log-weights [C, B] of the counted chains and what the transitions did."""

    log_w: torch.Tensor
    acceptance: torch.Tensor  # [B] mean acceptance probability over steps and counted chains
    step_size: torch.Tensor  # [B] final step size of each datum
    final: torch.Tensor  # [C, B, D] final positions of the counted chains
    step_sizes: torch.Tensor  # [T, B] the step size each transition used


def anneal(
    model: nn.Module,
    x: torch.Tensor,
    betas: torch.Tensor,
    z0: torch.Tensor,
    generator: torch.Generator | None,
    leapfrog: int = 10,
    step_size: float = 0.05,
    target_accept: float = 0.65,
    adapt_rate: float = 0.05,
    pilots: int = 2,
    progress: tqdm | None = None,
    step_sizes: torch.Tensor | None = None,
) -> AISRun:
    """Run chains from z0 [C + pilots, B, D] through p(z) p(x|z)^beta; log_w sums the increments of the first C.

    With betas rising from 0 to 1 and z0 ~ p(z), E[exp(log_w)] = p(x); with betas falling from 1 to 0 and z0
    an exact posterior sample, E[exp(log_w)] = 1 / p(x). The last `pilots` chains only set the step size;
    with `step_sizes` [T, B] given, transition t uses step_sizes[t - 1] and there are no pilots (pilots=0).

    Args:
        model: a model with `prior()` and `decode(z)` (one latent layer, or a GAN's observation model).
        x: the data [B, ...] whose p(x|z) the chains anneal toward.
        betas: the schedule [T + 1] (rising for forward AIS, falling for the reverse run).
        z0: the chains' starting points [C + pilots, B, D].
        generator: the random stream of the HMC momenta and accept steps.
        leapfrog: leapfrog steps per HMC transition.
        step_size: the starting step size.
        target_accept: the acceptance the pilots tune the step toward.
        adapt_rate: how fast the step size moves toward it.
        pilots: chains (the last ones) that only set the step size.
        progress: a progress bar advanced once per transition.
        step_sizes: fixed step sizes [T, B] instead of pilots.
    """
    if step_sizes is not None:
        if pilots != 0 or step_sizes.shape != (len(betas) - 1, z0.shape[1]):
            raise ConfigError(
                f"given step sizes need pilots=0 and shape [{len(betas) - 1}, {z0.shape[1]}], "
                f"got pilots={pilots} and {list(step_sizes.shape)}"
            )
    elif pilots < 1 or z0.shape[0] <= pilots:
        raise ConfigError(
            f"need at least one pilot and one counted chain, got {z0.shape[0]} chains, {pilots} pilots"
        )
    counted = z0.shape[0] - pilots
    prior = model.prior()
    betas = betas.to(device=x.device)

    def log_lik(z: torch.Tensor) -> torch.Tensor:
        return model.decode(z).log_prob(x)

    z = z0.detach()
    log_w = torch.zeros(z.shape[:-1], dtype=torch.float64, device=x.device)
    eps = torch.full(z.shape[1:-1], step_size, dtype=z.dtype, device=z.device)
    accept_sum = torch.zeros(z.shape[:-1], dtype=torch.float64, device=x.device)
    used = []
    for t in range(1, len(betas)):
        if step_sizes is not None:
            eps = step_sizes[t - 1].to(device=z.device, dtype=z.dtype)
        used.append(eps)
        with torch.no_grad():
            log_w += (betas[t] - betas[t - 1]) * log_lik(z).double()
        beta = float(betas[t])

        def target(zz: torch.Tensor, beta: float = beta) -> torch.Tensor:
            return prior.log_prob(zz) + beta * log_lik(zz)

        state = hmc.init(z, target)
        state, info = hmc.step(generator, state, target, eps.expand(z.shape[:-1]), leapfrog)
        z = state.position
        accept_sum += info.accept_prob.double()
        if step_sizes is None:
            pilot_accept = info.accept_prob[counted:].mean(0)
            eps = hmc.adapt_step_size(eps, pilot_accept, target_accept, iteration=0, rate=adapt_rate)
        if progress is not None:
            progress.update(1)
    acceptance = (accept_sum[:counted] / (len(betas) - 1)).mean(0)
    return AISRun(log_w[:counted], acceptance, eps, z[:counted], torch.stack(used))


@torch.no_grad()
def ais_log_px(
    model: nn.Module,
    x: torch.Tensor,
    steps: int,
    chains: int,
    generator: torch.Generator | None = None,
    kind: str = "sigmoid",
    leapfrog: int = 10,
    step_size: float = 0.05,
    pilots: int = 2,
    progress: tqdm | None = None,
) -> tuple[torch.Tensor, AISRun]:
    """Forward AIS estimate of log p(x) per datum [B] (log-mean-exp over `chains`), and the run.

    Args:
        model: a model with `prior()` and `decode(z)`.
        x: the data [B, ...].
        steps: T, the transitions of the schedule.
        chains: C, the counted chains per datum.
        generator: the random stream.
        kind: the schedule, a key of SCHEDULES.
        leapfrog: leapfrog steps per HMC transition.
        step_size: the starting step size.
        pilots: extra chains per datum that tune the step size.
        progress: a progress bar advanced once per transition.
    """
    if chains < 1:
        raise ConfigError(f"AIS needs at least 1 chain per datum, got C = {chains}")
    z0 = sample(model.prior(), (chains + pilots, len(x)), generator)
    run = anneal(
        model, x, schedule(steps, kind), z0, generator, leapfrog, step_size, pilots=pilots, progress=progress
    )
    return log_mean_exp(run.log_w), run


@torch.no_grad()
def bdmc(
    model: nn.Module,
    num_data: int,
    steps: int,
    chains: int,
    generator: torch.Generator | None = None,
    kind: str = "sigmoid",
    leapfrog: int = 10,
    step_size: float = 0.05,
    pilots: int = 2,
    progress: tqdm | None = None,
) -> dict[str, torch.Tensor]:
    """Bidirectional Monte Carlo on `num_data` data simulated from the model: per-datum lower and upper bounds.

    (z*, x) ~ p(z) p(x|z) makes z* an exact posterior sample for x; forward AIS bounds log p(x) from below,
    reverse AIS started at z* bounds it from above. The gap says how far AIS is from converged.

    Args:
        model: a model with `prior()` and `decode(z)`.
        num_data: how many data to simulate.
        steps: T, the transitions of each run's schedule.
        chains: C, the counted chains per datum.
        generator: the random stream (the simulated data and the chains).
        kind: the schedule, a key of SCHEDULES.
        leapfrog: leapfrog steps per HMC transition.
        step_size: the forward run's starting step size.
        pilots: the forward run's step-tuning chains per datum.
        progress: a progress bar advanced once per transition.
    """
    prior = model.prior()
    z_star = sample(prior, (num_data,), generator)
    x = sample(model.decode(z_star), (), generator)
    lower, fwd = ais_log_px(model, x, steps, chains, generator, kind, leapfrog, step_size, pilots, progress)
    z0 = z_star.unsqueeze(0).expand(chains, -1, -1).contiguous()
    betas = schedule(steps, kind).flip(0)
    # transition t of the reverse run targets beta_{T-t}: the step the forward run used there (beta_0, the
    # prior, which the forward run never moved on, takes beta_1's)
    fixed = fwd.step_sizes[[max(steps - t - 1, 0) for t in range(1, steps + 1)]]
    rev = anneal(model, x, betas, z0, generator, leapfrog, pilots=0, progress=progress, step_sizes=fixed)
    upper = -log_mean_exp(rev.log_w)
    return {
        "x": x,
        "lower": lower,
        "upper": upper,
        "acceptance_forward": fwd.acceptance,
        "acceptance_reverse": rev.acceptance,
    }
