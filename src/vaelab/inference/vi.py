"""Variational inference: fit a surrogate q(z) to the posterior p(z | D) (Jordan et al. 1999; Blei et al.
2017, "Variational inference: a review for statisticians").

    ELBO(q) = E_q[log p(D, z) - log q(z)] = log p(D) - KL(q || p(z | D))

Because KL >= 0 the ELBO never exceeds log p(D), and raising it lowers the KL. The reverse KL(q || p) is
fitted with reparameterised gradients (Kingma & Welling 2014) or, as the contrast, the score-function
estimator (Williams 1992; Ranganath et al. 2014); the forward KL(p || q) by maximising E_p[log q] with the
exact posterior's quadrature weights (moment matching, mass covering, as in EP). On the toy models the KL
is computed independently of the ELBO (closed form, or quadrature on the model's grid), so every recorded
step checks ELBO + KL = log p(D). The families of q live in `FAMILIES`, built from torch.distributions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import (
    Distribution,
    kl_divergence,
)
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from tqdm.auto import tqdm

from vaelab.errors import VaelabError
from vaelab.inference.families import FAMILIES, Family, make_family
from vaelab.inference.gradients import (
    ESTIMATORS,
    GRADIENT_REPEATS,
    compare_estimators,
    describe,
    gradient_variance,
    reparam_elbo,
    score_elbo,
)
from vaelab.inference.toy import GRID_POINTS, Grid, ToyModel

__all__ = [
    "ESTIMATORS",
    "FAMILIES",
    "GRADIENT_REPEATS",
    "Family",
    "compare_estimators",
    "describe",
    "fit",
    "gradient_variance",
    "make_family",
    "reparam_elbo",
    "score_elbo",
]


# ---- Independent measures of the fit: KL divergences by closed form or by quadrature on the grid


class KLEstimate(NamedTuple):
    """KL(q || p) with how it was computed and how far to trust it."""

    value: float
    method: str  # "closed form" or "quadrature"
    q_mass: float  # ∫ q over the grid: below 1 means q reaches outside it (the value is then too low)
    error: float  # |value on the grid - value on its every-other-point sub-grid|: the quadrature error


def reverse_kl(model: ToyModel, q: Distribution, grid: Grid | None = None) -> KLEstimate:
    """KL(q || p(z | D)): closed form when the posterior and q have a registered `kl_divergence`, else
    the trapezoid rule on `grid` (default: the model's), with the sub-grid difference as its error.

    Args:
        model: the toy model.
        q: the distribution to measure.
        grid: the quadrature grid; None: the model's.
    """
    with torch.no_grad():
        posterior = model.posterior()
        if posterior is not None:
            try:
                return KLEstimate(float(kl_divergence(q, posterior)), "closed form", 1.0, 0.0)
            except NotImplementedError:
                pass
        g = model.grid if grid is None else grid
        log_q = torch.cat([q.log_prob(c) for c in g.points.split(65536)])

        def kl_and_mass(log_q: Tensor, log_p: Tensor, log_cell: float) -> tuple[float, float]:
            w = (log_q + log_cell).exp()
            terms = torch.where(w > 0, w * (log_q - log_p), torch.zeros_like(w))
            return float(terms.sum()), float(w.sum())

        kl, mass = kl_and_mass(log_q, g.log_density, g.log_cell)
        half = g.every(2)
        kl_half, _ = kl_and_mass(g.pick(log_q, 2), half.log_density, half.log_cell)
    return KLEstimate(kl, "quadrature", mass, abs(kl - kl_half))


def covering_grid(model: ToyModel, samples: Tensor) -> Grid:
    """A grid over the model's box widened to hold q too: the central 99.8% of `samples` from q per axis,
    padded by its width on each side (for a Gaussian q, out to about 9 sds); twice the model grid's
    resolution in 1-D and 2-D.

    Args:
        model: the toy model.
        samples: draws from q [S, D].
    """
    z = samples.detach().cpu().double().numpy()
    lo, hi = np.quantile(z, 0.001, axis=0), np.quantile(z, 0.999, axis=0)
    pad = hi - lo
    box = np.stack([np.minimum(model.bounds[:, 0], lo - pad), np.maximum(model.bounds[:, 1], hi + pad)], 1)
    n = GRID_POINTS[model.dim]
    return model.grid_over(box, 2 * n - 1 if model.dim <= 2 else n)


@dataclass(frozen=True)
class PosteriorQuadrature:
    """Grid points carrying all but ~1e-14 of the posterior mass, with their weights (sum ≈ 1)."""

    points: Tensor  # [M, D]
    weights: Tensor  # [M]
    log_density: Tensor  # [M]

    @classmethod
    def of(cls, model: ToyModel) -> PosteriorQuadrature:
        g = model.grid
        log_w = g.log_density + g.log_cell
        keep = log_w > log_w.max() + math.log(1e-14)
        return cls(g.points[keep], log_w[keep].exp(), g.log_density[keep])

    def forward_kl(self, q: Distribution) -> Tensor:
        """KL(p || q) = Σ wᵢ (log p(zᵢ | D) - log q(zᵢ)), differentiable in q's parameters.

        Args:
            q: the distribution to measure.
        """
        return (self.weights * (self.log_density - q.log_prob(self.points))).sum()


# ---- Fitting


def _reverse_loss(objective: Tensor, family: Family, target: PosteriorQuadrature | None) -> Tensor:
    return -objective.mean()


def _forward_loss(objective: Tensor, family: Family, target: PosteriorQuadrature | None) -> Tensor:
    assert target is not None
    return target.forward_kl(family.distribution())


DIVERGENCES: dict[str, Callable[[Tensor, Family, PosteriorQuadrature | None], Tensor]] = {
    "reverse": _reverse_loss,
    "forward": _forward_loss,
}


@dataclass
class VIResult:
    """A fitted q with the per-step record and the final, precise measurements."""

    family: Family
    trace: dict[str, np.ndarray]
    summary: dict[str, Any] = field(default_factory=dict)


def _point(z: Tensor) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in z.detach().cpu().tolist()) + "]"


def _non_finite(model: ToyModel, z: Tensor, step: int, family: str) -> VaelabError:
    """Name the first sampled point whose log joint is not finite, or blame q itself."""
    flat = z.detach().reshape(-1, z.shape[-1])
    with torch.no_grad():
        lj = model.log_joint(flat)
    bad = (~torch.isfinite(lj)).nonzero()
    if len(bad):
        i = int(bad[0, 0])
        return VaelabError(f"log p(D, z) is {float(lj[i])} at z={_point(flat[i])} (step {step})")
    return _diverged("the ELBO became non-finite", step, family)


def _diverged(what: str, step: int | str, family: str) -> VaelabError:
    """q ran away (too large a learning rate): one line naming what broke, where, and the remedy."""
    return VaelabError(f"{what} at step {step}: the {family} q diverged; try a smaller --lr")


def _check_q(q: Family, step: int | str, family: str) -> None:
    """After an optimiser step: every parameter finite and q a valid distribution (its constraints hold)."""
    if not all(bool(torch.isfinite(p).all()) for p in q.parameters()):
        raise _diverged("q's parameters became non-finite", step, family)
    try:
        with torch.no_grad():
            q.distribution()
    except ValueError as e:  # torch's argument validation: e.g. a Cholesky factor with a non-finite entry
        raise _diverged(f"q is no longer a valid distribution ({type(e).__name__})", step, family) from None


_MEASURES = {
    "elbo": "the ELBO estimate",
    "elbo_se": "the ELBO's standard error",
    "kl": "KL(q || p)",
    "kl_forward": "KL(p || q)",
    "q_mass": "q's mass on the posterior's grid",
}


def _check_record(trace: dict[str, np.ndarray], t: int, recorded: list[str], family: str) -> None:
    """The step's measurements finite, and q's density not zero all over the posterior's grid (q collapsed
    or ran off: its numbers and figures would be meaningless)."""
    for key in recorded:
        value = float(trace[key][t])
        if not math.isfinite(value):
            raise _diverged(f"{_MEASURES[key]} became {value}", t + 1, family)
    if "q_mass" in recorded and trace["q_mass"][t] == 0:
        raise _diverged("q's density underflowed to 0 all over the posterior's grid", t + 1, family)


_SUMMARY_MEASURES = ("elbo", "elbo_standard_error", "kl_q_p", "kl_p_q", "q_mass_on_grid", "mean", "cov")


def fit(
    model: ToyModel,
    family: str = "full",
    divergence: str = "reverse",
    steps: int = 2000,
    lr: float = 0.02,
    num_samples: int = 16,
    estimator: str = "reparam",
    components: int = 2,
    generator: torch.Generator | None = None,
    kl_every: int = 10,
    progress: bool = False,
) -> VIResult:
    """Fit q of `family` to the model's posterior by Adam (cosine-decayed learning rate), returning the
    average of the last 20% of iterates.

    `divergence` "reverse" maximises the ELBO with the `estimator` ("reparam" or "score") on
    `num_samples` draws per step; "forward" minimises KL(p || q) with the exact quadrature weights. Every
    step records the ELBO estimate; every `kl_every` steps the exact KL(q || p) and KL(p || q).

    Args:
        model: the toy model.
        family: a key of FAMILIES.
        divergence: reverse or forward (a key of DIVERGENCES).
        steps: optimisation steps.
        lr: Adam's starting learning rate.
        num_samples: draws from q per step.
        estimator: reparam or score (a key of ESTIMATORS).
        components: mixture components (the mixture family).
        generator: the random stream; None: torch's global one.
        kl_every: record the exact KLs every this many steps.
        progress: show a progress bar.
    """
    if steps < 1:
        raise VaelabError(f"steps must be at least 1, got {steps}")
    if num_samples < 1:
        raise VaelabError(f"samples per step must be at least 1, got {num_samples}")
    if not (lr > 0 and math.isfinite(lr)):
        raise VaelabError(f"learning rate must be a positive number, got {lr}")
    if divergence not in DIVERGENCES:
        raise VaelabError(f"unknown divergence {divergence!r}; choose from: {', '.join(DIVERGENCES)}")
    if estimator not in ESTIMATORS:
        raise VaelabError(f"unknown estimator {estimator!r}; choose from: {', '.join(ESTIMATORS)}")
    q = make_family(family, model, generator, components)
    target = PosteriorQuadrature.of(model)
    trace_grid = model.grid.coarse()
    opt = torch.optim.Adam(q.parameters(), lr=lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.02 * lr)
    nan = np.full(steps, np.nan)
    trace = {k: nan.copy() for k in ("elbo", "elbo_se", "kl", "kl_forward", "q_mass")}
    trace["step"] = np.arange(1, steps + 1)
    # Polyak-Ruppert averaging of the last 20% of iterates: the mean of a noisy walk around the optimum is
    # much closer to it than where the walk happens to stop.
    average_from = steps - max(1, steps // 5)
    averaged = torch.zeros_like(parameters_to_vector(q.parameters())).detach()
    bar = tqdm(range(steps), desc=f"vi {family} ({divergence})", disable=not progress)
    for t in bar:
        objective, elbo, z = ESTIMATORS[estimator](model, q, num_samples, generator)
        loss = DIVERGENCES[divergence](objective, q, target)
        if not (torch.isfinite(loss) and torch.isfinite(elbo).all()):
            raise _non_finite(model, z, t + 1, family)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # Clipping tames the first steps from a far-off start, where a flow can otherwise squeeze itself
        # into a needle before it finds the posterior; later gradients are far below the limit.
        nn.utils.clip_grad_norm_(q.parameters(), 10.0)
        opt.step()
        sched.step()
        _check_q(q, t + 1, family)
        if t >= average_from:
            averaged.add_((parameters_to_vector(q.parameters()).detach() - averaged) / (t - average_from + 1))
        trace["elbo"][t] = float(elbo.mean())
        trace["elbo_se"][t] = float(elbo.std() / math.sqrt(len(elbo))) if len(elbo) > 1 else np.nan
        recorded = ["elbo", "elbo_se"] if len(elbo) > 1 else ["elbo"]
        if t % kl_every == 0 or t == steps - 1:
            with torch.no_grad():
                qd = q.distribution()
                kl = reverse_kl(model, qd, trace_grid)
                trace["kl"][t], trace["q_mass"][t] = kl.value, kl.q_mass
                trace["kl_forward"][t] = float(target.forward_kl(qd))
            recorded += ["kl", "kl_forward", "q_mass"]
        _check_record(trace, t, recorded, family)
        if t % 50 == 0:
            bar.set_postfix(elbo=f"{trace['elbo'][t]:.3f}")
    with torch.no_grad():
        vector_to_parameters(averaged, q.parameters())
    end = f"{steps} (the average of the last iterates)"
    _check_q(q, end, family)
    result = VIResult(q, trace)
    result.summary = evaluate(model, q, generator)
    for key in _SUMMARY_MEASURES:
        if not np.isfinite(result.summary[key]).all():
            raise _diverged(f"the fitted q's {key} is not finite", end, family)
    if result.summary["q_mass_on_grid"] == 0:
        raise _diverged("the fitted q's density underflowed to 0 all over the grid", end, family)
    result.summary.update(family=family, divergence=divergence, estimator=estimator, steps=steps, lr=lr)
    result.summary["samples_per_step"] = num_samples
    return result


def evaluate(
    model: ToyModel, family: Family, generator: torch.Generator | None = None, num_samples: int = 20000
) -> dict[str, Any]:
    """The final fit measured precisely: ELBO (with its standard error), both KLs, q's moments, and the
    identity ELBO + KL(q || p) = log p(D) with its residual in standard errors.

    Args:
        model: the toy model.
        family: the fitted q.
        generator: the random stream; None: torch's global one.
        num_samples: draws from q for the ELBO and the moments.
    """
    with torch.no_grad():
        q = family.distribution()
        z = family.sample(num_samples, generator)
        values = model.log_joint(z) - q.log_prob(z)
        elbo, se = float(values.mean()), float(values.std() / math.sqrt(num_samples))
        kl = reverse_kl(model, q, covering_grid(model, z))
        kl_forward = float(PosteriorQuadrature.of(model).forward_kl(q))
    exact = model.exact
    residual = elbo + kl.value - exact.log_evidence
    rounding = 1e-12 * max(1.0, abs(exact.log_evidence))
    tolerance = math.hypot(se, kl.error + exact.log_evidence_error) + rounding
    return {
        "log_evidence": exact.log_evidence,
        "log_evidence_error": exact.log_evidence_error,
        "log_evidence_method": exact.method,
        "elbo": elbo,
        "elbo_standard_error": se,
        "elbo_samples": num_samples,
        "kl_q_p": kl.value,
        "kl_q_p_method": kl.method,
        "kl_q_p_quadrature_error": kl.error,
        "q_mass_on_grid": kl.q_mass,
        "kl_p_q": kl_forward,
        "elbo_plus_kl": elbo + kl.value,
        # ELBO + KL - log p(D) is zero up to Monte Carlo error (in the ELBO) and quadrature error (in the
        # KL and log p(D)); the residual is also given in units of that combined error.
        "identity_residual": residual,
        "identity_tolerance": tolerance,
        "identity_residual_in_tolerance": residual / tolerance,
        "mean": z.mean(0).tolist(),
        "cov": torch.atleast_2d(torch.cov(z.T)).tolist(),
    }
