"""Markov chain Monte Carlo: random-walk Metropolis-Hastings (Metropolis et al. 1953; Hastings 1970) as a
pure kernel in the BlackJAX style, and a driver that runs C chains of any registered kernel (MH, HMC) with
warm-up and per-chain step-size adaptation.

The kernel: `init(position, fn) -> MHState`, `step(generator, state, fn, step_size) -> (MHState, MHInfo)`,
batched over every leading dimension of `position` [..., D]. A proposal whose log density is not finite
(nan, +inf or -inf) is rejected. Diagnostics (ESS, R-hat) live in `vaelab.inference.diagnostics`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from vaelab.errors import VaelabError
from vaelab.inference import hmc

LogDensityFn = Callable[[Tensor], Tensor]


class MHState(NamedTuple):
    """Where each chain is and its log density."""

    position: Tensor  # [..., D]
    log_density: Tensor  # [...]


class MHInfo(NamedTuple):
    """What one transition did, per chain."""

    accept_prob: Tensor  # [...] min(1, p(proposal) / p(current)); 0 for non-finite proposals
    accepted: Tensor  # bool [...]


def init(position: Tensor, log_density_fn: LogDensityFn) -> MHState:
    """The state at `position` [..., D].

    Args:
        position: the chains' positions [..., D].
        log_density_fn: log p, batched over leading dims.
    """
    with torch.no_grad():
        return MHState(position.detach(), log_density_fn(position.detach()))


def step(
    generator: torch.Generator | None,
    state: MHState,
    log_density_fn: LogDensityFn,
    step_size: float | Tensor,
) -> tuple[MHState, MHInfo]:
    """One random-walk transition: propose x' = x + step_size * N(0, I), accept with min(1, p(x')/p(x)).

    The Gaussian proposal is symmetric, so the Hastings correction cancels. `step_size` is a float or a
    per-chain tensor [...].

    Args:
        generator: the random stream of the proposals and the accept draws.
        state: the chains' current state.
        log_density_fn: log p, batched over leading dims.
        step_size: a float or a per-chain tensor [...].
    """
    x0 = state.position
    eps = hmc._per_chain(step_size, x0)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    proposal = x0 + eps * noise
    with torch.no_grad():
        log_density = log_density_fn(proposal)
    log_ratio = log_density - state.log_density
    finite = torch.isfinite(log_density) & torch.isfinite(log_ratio)
    log_accept = torch.where(finite, log_ratio, torch.full_like(log_ratio, -torch.inf)).clamp(max=0.0)
    accept_prob = log_accept.exp()
    u = torch.rand(accept_prob.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    accepted = u < accept_prob
    new = MHState(
        torch.where(accepted.unsqueeze(-1), proposal, x0),
        torch.where(accepted, log_density, state.log_density),
    )
    return new, MHInfo(accept_prob, accepted)


@dataclass(frozen=True)
class Sampler:
    """A kernel as the driver sees it: how to start, how to step, what acceptance to tune toward."""

    name: str
    description: str
    init: Callable[[Tensor, LogDensityFn], Any]
    step: Callable[..., tuple[Any, Any]]  # (generator, state, fn, step_size, num_leapfrog) -> (state, info)
    target_accept: float
    default_step_size: float


SAMPLERS: dict[str, Sampler] = {
    "mh": Sampler(
        "mh",
        "random-walk Metropolis-Hastings, Gaussian proposal",
        init,
        lambda g, s, fn, eps, num_leapfrog: step(g, s, fn, eps),
        target_accept=0.234,
        default_step_size=0.5,
    ),
    "hmc": Sampler(
        "hmc",
        "Hamiltonian Monte Carlo, leapfrog, identity mass",
        hmc.init,
        hmc.step,
        # Above Stan's 0.8: with an identity mass matrix, curved posteriors (the banana's narrow arms) need
        # the smaller steps a higher target gives, or the chains stall in the arms and bias the moments.
        target_accept=0.9,
        default_step_size=0.1,
    ),
}


def get_sampler(name: str) -> Sampler:
    """The sampler registered under `name`; a clear error listing the choices otherwise.

    Args:
        name: a key of SAMPLERS.
    """
    if name not in SAMPLERS:
        raise VaelabError(f"unknown sampler {name!r}; choose from: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


@dataclass(frozen=True)
class Chains:
    """Draws of C chains after warm-up, with what the sampler did."""

    sampler: str
    samples: Tensor  # [C, N, D]
    log_density: Tensor  # [C, N]
    accept_prob: Tensor  # [C, N]
    warmup_samples: Tensor  # [C, W, D]
    step_size: Tensor  # [C], the step used while drawing

    @property
    def acceptance(self) -> Tensor:
        """Mean acceptance probability of each chain [C]."""
        return self.accept_prob.mean(-1)


def format_point(z: Tensor) -> str:
    """A point as a short list for error messages.

    Args:
        z: a point [D].
    """
    return "[" + ", ".join(f"{v:.4g}" for v in z.detach().cpu().tolist()) + "]"


def sample(
    log_density_fn: LogDensityFn,
    initial_position: Tensor,
    sampler: str = "hmc",
    draws: int = 1000,
    warmup: int = 500,
    step_size: float | None = None,
    num_leapfrog: int = 10,
    adapt: bool = True,
    generator: torch.Generator | None = None,
    progress: bool = False,
    target_accept: float | None = None,
) -> Chains:
    """Run C chains from `initial_position` [C, D]: `warmup` adapted steps (discarded), then `draws`.

    HMC draws its number of leapfrog steps uniformly from [L/2, 3L/2] each iteration (L = `num_leapfrog`).
    With `adapt`, each chain's step size follows `hmc.adapt_step_size` toward `target_accept` (default: the
    sampler's, 0.234 MH, 0.9 HMC) during warm-up, then stays fixed. Raises VaelabError for bad settings and for a starting
    point whose log density is not finite (naming the chain and the point).

    Args:
        log_density_fn: log p, batched over leading dims.
        initial_position: the chains' starts [C, D].
        sampler: a key of SAMPLERS.
        draws: kept draws per chain.
        warmup: adapted, discarded steps per chain.
        step_size: the starting step size; None: the sampler's default.
        num_leapfrog: HMC: the mean number of leapfrog steps.
        adapt: tune the step size during warm-up.
        generator: the random stream; None: torch's global one.
        progress: show a progress bar.
        target_accept: the acceptance warm-up tunes toward; None: the sampler's default.
    """
    kernel = get_sampler(sampler)
    if draws < 1:
        raise VaelabError(f"draws must be at least 1, got {draws}")
    if warmup < 0:
        raise VaelabError(f"warmup must be 0 or more, got {warmup}")
    if num_leapfrog < 1:
        raise VaelabError(f"the number of leapfrog steps must be at least 1, got {num_leapfrog}")
    step_size = kernel.default_step_size if step_size is None else step_size
    target = kernel.target_accept if target_accept is None else target_accept
    if not 0 < target < 1:
        raise VaelabError(f"target acceptance must be between 0 and 1, got {target}")
    if not (step_size > 0 and step_size < float("inf")):
        raise VaelabError(f"step size must be a positive number, got {step_size}")
    if initial_position.ndim != 2:
        raise VaelabError(
            f"initial positions must have shape [chains, dim], got {tuple(initial_position.shape)}"
        )
    state = kernel.init(initial_position, log_density_fn)
    bad = ~torch.isfinite(state.log_density)
    if bad.any():
        c = int(bad.nonzero()[0, 0])
        raise VaelabError(
            f"log density is {float(state.log_density[c])} at z={format_point(initial_position[c])} "
            f"(chain {c}, step 0): start the chains where the density is positive"
        )
    num_chains = initial_position.shape[0]
    eps = torch.full((num_chains,), float(step_size), dtype=initial_position.dtype)
    eps = eps.to(initial_position.device)
    positions, log_densities, accept_probs = [], [], []
    bar = tqdm(range(warmup + draws), desc=f"{sampler} ({num_chains} chains)", disable=not progress)
    rng_device = generator.device if generator is not None else initial_position.device
    for t in bar:
        # A random trajectory length avoids resonance with the posterior's periods (Neal 2011, 5.4.2.2).
        lo, hi = max(1, num_leapfrog // 2), num_leapfrog + num_leapfrog // 2
        length = int(torch.randint(lo, hi + 1, (1,), generator=generator, device=rng_device))
        state, info = kernel.step(generator, state, log_density_fn, eps, length)
        if t < warmup and adapt:
            eps = hmc.adapt_step_size(eps, info.accept_prob, target, iteration=t)
        positions.append(state.position)
        log_densities.append(state.log_density)
        accept_probs.append(info.accept_prob)
    z = torch.stack(positions, 1)
    return Chains(
        sampler=sampler,
        samples=z[:, warmup:],
        log_density=torch.stack(log_densities, 1)[:, warmup:],
        accept_prob=torch.stack(accept_probs, 1)[:, warmup:],
        warmup_samples=z[:, :warmup],
        step_size=eps,
    )
