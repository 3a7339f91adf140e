"""Hamiltonian Monte Carlo as a pure, batched kernel (Duane et al. 1987; Neal 2011, "MCMC using
Hamiltonian dynamics"), in the style of BlackJAX: `init(position, fn) -> HMCState`, then
`step(generator, state, fn, step_size, num_leapfrog) -> (HMCState, HMCInfo)`, nothing hidden.

Every leading dimension of `position` [..., D] is an independent chain; `log_density_fn` maps [..., D] to
[...] and must be differentiable by autograd. The identity mass matrix is used. The kernel works inside a
caller's `torch.no_grad()` (it turns gradients on only to differentiate the log density), on any device and
in any floating dtype; a proposal whose energy is not finite is rejected, never propagated. Shared by
`vaelab.inference.mcmc` (the sampling driver) and annealed importance sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

LogDensityFn = Callable[[Tensor], Tensor]


class HMCState(NamedTuple):
    """Where each chain is, with its log density and the gradient there (reused by the next step)."""

    position: Tensor  # [..., D]
    log_density: Tensor  # [...]
    grad: Tensor  # [..., D]


class HMCInfo(NamedTuple):
    """What one transition did, per chain."""

    accept_prob: Tensor  # [...] min(1, exp(-energy_error)); 0 for non-finite proposals
    accepted: Tensor  # bool [...]
    energy_error: Tensor  # [...] H(proposal) - H(current); may be inf or nan for divergent trajectories


def value_and_grad(log_density_fn: LogDensityFn, position: Tensor) -> tuple[Tensor, Tensor]:
    """log density [...] and its gradient [..., D] at `position`, both detached.

    Args:
        log_density_fn: log p, batched over leading dims.
        position: points [..., D].
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = position.detach().clone().requires_grad_(True)
        log_density = log_density_fn(x)
        if log_density.shape != position.shape[:-1]:
            raise ValueError(
                f"log_density_fn returned shape {tuple(log_density.shape)} for positions of shape "
                f"{tuple(position.shape)}; expected {tuple(position.shape[:-1])}"
            )
        if log_density.requires_grad:
            (grad,) = torch.autograd.grad(log_density.sum(), x)
        else:
            grad = torch.zeros_like(x)
    return log_density.detach(), grad.detach()


def init(position: Tensor, log_density_fn: LogDensityFn) -> HMCState:
    """The state at `position` [..., D]: its log density and gradient.

    Args:
        position: the chains' positions [..., D].
        log_density_fn: log p, batched over leading dims.
    """
    log_density, grad = value_and_grad(log_density_fn, position)
    return HMCState(position.detach(), log_density, grad)


def _per_chain(step_size: float | Tensor, like: Tensor) -> Tensor:
    """A step size as a tensor that broadcasts against positions [..., D]: scalar, or [...] -> [..., 1]."""
    eps = torch.as_tensor(step_size, dtype=like.dtype, device=like.device)
    return eps.unsqueeze(-1) if eps.ndim > 0 else eps


def leapfrog(
    position: Tensor,
    momentum: Tensor,
    grad: Tensor,
    log_density_fn: LogDensityFn,
    step_size: float | Tensor,
    num_steps: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`num_steps` leapfrog (Störmer-Verlet) steps of Hamiltonian dynamics with H = -log p(x) + |m|²/2.

    Returns (position, momentum, log_density, grad) at the end. Volume-preserving and time-reversible,
    so its energy error is O(step_size²) over a fixed trajectory length.

    Args:
        position: positions [..., D].
        momentum: momenta [..., D].
        grad: the gradient of log p at `position`.
        log_density_fn: log p, batched over leading dims.
        step_size: a float or a per-chain tensor [...].
        num_steps: how many leapfrog steps.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    eps = _per_chain(step_size, position)
    x = position
    p = momentum + 0.5 * eps * grad
    for i in range(num_steps):
        x = x + eps * p
        log_density, grad = value_and_grad(log_density_fn, x)
        p = p + (eps if i < num_steps - 1 else 0.5 * eps) * grad
    return x, p, log_density, grad


def step(
    generator: torch.Generator | None,
    state: HMCState,
    log_density_fn: LogDensityFn,
    step_size: float | Tensor,
    num_leapfrog: int,
) -> tuple[HMCState, HMCInfo]:
    """One HMC transition per chain: fresh Gaussian momentum, a leapfrog trajectory, a Metropolis test.

    `generator` (on the positions' device) drives the momentum and the accept draw; None uses torch's
    global generator. `step_size` is a float or a per-chain tensor [...].

    Args:
        generator: the random stream of the momenta and the accept draws.
        state: the chains' current state.
        log_density_fn: log p, batched over leading dims.
        step_size: a float or a per-chain tensor [...].
        num_leapfrog: leapfrog steps in the trajectory.
    """
    x0 = state.position
    momentum = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    x, p, log_density, grad = leapfrog(x0, momentum, state.grad, log_density_fn, step_size, num_leapfrog)
    energy0 = -state.log_density + 0.5 * (momentum**2).sum(-1)
    energy1 = -log_density + 0.5 * (p**2).sum(-1)
    energy_error = energy1 - energy0
    finite = torch.isfinite(energy_error) & torch.isfinite(x).all(-1) & torch.isfinite(grad).all(-1)
    neg_inf = torch.full_like(energy_error, -torch.inf)
    log_accept = torch.where(finite, -energy_error, neg_inf).clamp(max=0.0)
    accept_prob = log_accept.exp()
    u = torch.rand(accept_prob.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    accepted = u < accept_prob
    keep = accepted.unsqueeze(-1)
    new = HMCState(
        torch.where(keep, x, x0),
        torch.where(accepted, log_density, state.log_density),
        torch.where(keep, grad, state.grad),
    )
    return new, HMCInfo(accept_prob, accepted, energy_error)


def adapt_step_size(
    step_size: Tensor,
    accept_prob: Tensor,
    target: float = 0.65,
    iteration: int = 0,
    rate: float = 0.5,
    decay: float = 0.6,
    t0: float = 10.0,
) -> Tensor:
    """One Robbins-Monro update per chain: log ε += rate (t0 / (t + t0))^decay (accept_prob - target).

    Too many rejections shrink the step, too few grow it. The gain stays near `rate` for the first ~t0
    iterations (so a step off by orders of magnitude is fixed quickly), then decays (decay in (0.5, 1]) so
    the step settles where the expected acceptance equals `target` (0.65-0.9 suit HMC, 0.234 random-walk
    MH). Use during warm-up only: adapting while sampling breaks detailed balance.

    Args:
        step_size: the current step sizes [...].
        accept_prob: this iteration's acceptance probabilities [...].
        target: the acceptance to tune toward.
        iteration: t, the adaptation step.
        rate: the gain at the start.
        decay: how fast the gain decays, in (0.5, 1].
        t0: iterations of near-constant gain.
    """
    gain = rate * (t0 / (iteration + t0)) ** decay
    a = torch.nan_to_num(accept_prob, nan=0.0)
    eps = torch.as_tensor(step_size, dtype=a.dtype, device=a.device)
    return eps * torch.exp(gain * (a - target))
