"""`vaelab mcmc`: sample a toy posterior whose truth is known with Metropolis-Hastings or HMC, and check the
draws against it with ArviZ's diagnostics.

    vaelab mcmc --model banana --sampler hmc --chains 4 --draws 2000 --out runs/vi
    vaelab mcmc --model bimodal-2d --sampler mh --init 1.5,-1.5 --out runs/stuck   (every chain starts there)

Writes into --out: mcmc-SAMPLER-samples.png (draws over the exact density's contours), mcmc-SAMPLER-trace.png,
mcmc-SAMPLER-error.png (the error of the mean falling like 1/sqrt(N)), mcmc-SAMPLER-draws.npy ([C, N, D]) and
summary.json, shared with `vaelab vi` on the same model.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.commands import catalog
from vaelab.commands.common import add_shared_options
from vaelab.commands.vi import choose, one_thread, update_summary
from vaelab.errors import VaelabError
from vaelab.io import atomic_save, check_can_create, ensure_dir

if TYPE_CHECKING:
    import torch

    from vaelab.inference import mcmc, toy

MIN_DRAWS = 4  # ArviZ's split R-hat and ESS halve each chain, and each half needs 2 draws


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `vaelab mcmc`.

    Args:
        subparsers: the `vaelab` command's subparsers.
    """
    p = subparsers.add_parser(
        "mcmc",
        help="MCMC (Metropolis-Hastings, HMC) on a toy posterior whose truth is known",
        description=__doc__,
    )
    p.add_argument("--model", help=f"toy model: {', '.join(catalog.TOY_MODELS)}")
    p.add_argument("--sampler", default="hmc", help=f"sampler: {', '.join(catalog.SAMPLERS)}")
    p.add_argument("--chains", type=int, default=4, help="independent chains (R-hat needs 2 or more)")
    p.add_argument(
        "--draws", type=int, default=2000, help=f"draws per chain after warm-up (at least {MIN_DRAWS})"
    )
    p.add_argument("--warmup", type=int, default=500, help="warm-up iterations per chain (step size adapted)")
    p.add_argument(
        "--step-size",
        type=float,
        default=None,
        help="initial step size (default: the sampler's, 0.5 MH, 0.1 HMC)",
    )
    p.add_argument("--leapfrog", type=int, default=10, help="HMC: mean number of leapfrog steps")
    p.add_argument(
        "--target-accept",
        type=float,
        default=None,
        help="acceptance the warm-up tunes toward (default: 0.234 MH, 0.9 HMC)",
    )
    p.add_argument("--no-adapt", action="store_true", help="keep the step size fixed during warm-up")
    p.add_argument(
        "--init", default=None, help="start every chain at this point, e.g. 1.5,-1.5 (default: prior draws)"
    )
    add_shared_options(p, "seed", "quiet", seed="seed of the run's torch.Generator")
    p.add_argument("--out", help="output folder")
    p.set_defaults(func=run)


def initial_points(
    model: toy.ToyModel, text: str | None, chains: int, generator: torch.Generator
) -> torch.Tensor:
    """[C, D] starting points: draws from the prior, or every chain at the point given as 'a,b,...'.

    Args:
        model: the toy model.
        text: --init as 'a,b,...', or None.
        chains: C, the number of chains.
        generator: the random stream of the prior draws.
    """
    import torch

    if text is None:
        return model.initial_points(chains, generator)
    try:
        point = [float(v) for v in text.split(",")]
    except ValueError:
        raise VaelabError(f"--init must be {model.dim} comma-separated numbers, got {text!r}") from None
    if len(point) != model.dim:
        raise VaelabError(f"--init needs {model.dim} numbers for model {model.name!r}, got {len(point)}")
    return torch.tensor(point, dtype=torch.float64).expand(chains, -1).clone()


def run(args: argparse.Namespace) -> int:
    """`vaelab mcmc`: sample, check the draws against the truth, write the figures and summary.json.

    Args:
        args: the parsed flags.
    """
    import numpy as np
    import torch

    from vaelab.inference import mcmc, toy

    model = toy.get_model(choose(args.model, "--model", toy.MODELS))
    sampler = choose(args.sampler, "--sampler", mcmc.SAMPLERS)
    if args.out is None:
        raise VaelabError("--out is required: the folder to write the figures and summary.json into")
    if args.chains < 1:
        raise VaelabError(f"chains must be at least 1, got {args.chains}")
    if args.draws < MIN_DRAWS:
        raise VaelabError(
            f"draws must be at least {MIN_DRAWS} (R-hat and ESS split each chain in two halves of 2), got {args.draws}"
        )
    out = check_can_create(args.out)  # created once sampling has run: a refused setting leaves nothing
    generator = torch.Generator().manual_seed(args.seed)
    x0 = initial_points(model, args.init, args.chains, generator)
    with one_thread():
        chains = mcmc.sample(
            model.log_joint, x0, sampler, args.draws, args.warmup, args.step_size, args.leapfrog,
            adapt=not args.no_adapt, generator=generator, progress=not args.quiet, target_accept=args.target_accept,
        )  # fmt: skip
        entry = measure(model, chains)
        entry["settings"] = {
            "chains": args.chains, "draws": args.draws, "warmup": args.warmup, "initial_step_size": args.step_size,
            "leapfrog": args.leapfrog if sampler == "hmc" else None, "adapt": not args.no_adapt,
            "target_accept": args.target_accept or mcmc.SAMPLERS[sampler].target_accept,
            "init": args.init or "prior draws", "seed": args.seed,
        }  # fmt: skip
        from vaelab.viz import inference as figures

        ensure_dir(out)
        z, w = chains.samples.numpy(), chains.warmup_samples.numpy()
        title = f"{model.name}: {sampler}, {args.chains} chains × {args.draws} draws"
        written = [
            figures.samples_over_density(model, z, title, out / f"mcmc-{sampler}-samples.png"),
            figures.trace_plot(model, z, w, title, out / f"mcmc-{sampler}-trace.png"),
            figures.error_curve_plot(entry["error_curve"], title, out / f"mcmc-{sampler}-error.png"),
            atomic_save(out / f"mcmc-{sampler}-draws.npy", lambda f: np.save(f, z)),
        ]
    written.append(update_summary(out, model, "mcmc", {sampler: entry}))
    print(report(model, sampler, entry))
    print(f"outputs in {out}/:")
    for p in written:
        print(f"  {Path(p).name}")
    return 0


def measure(model: toy.ToyModel, chains: mcmc.Chains) -> dict[str, Any]:
    """Diagnostics, moments with standard errors, their distance from the exact ones, and the error curve.

    Args:
        model: the toy model.
        chains: the draws and acceptance of `mcmc.sample`.
    """
    import numpy as np

    from vaelab.inference import diagnostics

    s = diagnostics.summarize(chains.samples, chains.accept_prob)
    ex = model.exact
    sd = np.sqrt(np.diag(ex.cov))
    with np.errstate(divide="ignore", invalid="ignore"):  # a stuck chain has a zero standard error
        z_mean = (np.array(s["mean"]) - ex.mean) / np.array(s["mean_mcse"])
        z_var = (np.array(s["var"]) - np.diag(ex.cov)) / np.array(s["var_mcse"])
    s.update(
        step_size=chains.step_size.tolist(),
        mean_error_in_mcse=z_mean.tolist(),
        var_error_in_mcse=z_var.tolist(),
        within_4_mcse=bool(np.all(np.abs(z_mean) < 4) and np.all(np.abs(z_var) < 4)),
        error_curve=diagnostics.error_curve(chains.samples, ex.mean, sd),
    )
    return s


def _slope_line(curve: dict[str, Any]) -> str:
    import numpy as np

    tau = float(np.mean(curve["autocorrelation_time"]))
    if np.isnan(curve["slope"]):
        return f"  error of the mean: too few draws past the autocorrelation time (τ = {tau:.0f}) to fit its slope"
    return f"  error of the mean falls with slope {curve['slope']:.2f} in log-log (1/sqrt(N): -0.5), τ = {tau:.1f}"


def report(model: toy.ToyModel, sampler: str, s: dict[str, Any]) -> str:
    """A few lines for the terminal: what ran, the diagnostics, and the moments against the truth.

    Args:
        model: the toy model.
        sampler: the sampler's name.
        s: what `measure` returned.
    """
    import numpy as np

    fmt = lambda xs: "[" + ", ".join(f"{x:.4f}" for x in xs) + "]"  # noqa: E731
    rhat = max(s["rhat"])
    lines = [
        f"{model.name}, {sampler}: {s['chains']} chain{'s' * (s['chains'] != 1)} × {s['draws_per_chain']} draws, acceptance "
        f"{s['acceptance']:.2f}, ESS (bulk) min {min(s['ess_bulk']):.0f}, R-hat max {rhat:.3f}",
        f"  mean {fmt(s['mean'])} ± {fmt(s['mean_mcse'])}; exact {fmt(model.exact.mean)}",
        f"  var  {fmt(s['var'])} ± {fmt(s['var_mcse'])}; exact {fmt(np.diag(model.exact.cov))}",
        _slope_line(s["error_curve"]),
    ]
    if s["acceptance"] < 0.01:  # the chains barely left their starts (R-hat divides by a zero variance)
        lines.append(
            f"  warning: acceptance {s['acceptance']:.2g}: the chains barely moved; a smaller --step-size, "
            "or let the warm-up adapt it (without --no-adapt)"
        )
    elif s["chains"] < 2:
        lines.append("  note: R-hat compares chains: run 2 or more (--chains) to have it")
    elif not rhat < 1.01:
        lines.append(
            f"  warning: R-hat {rhat:.2f} > 1.01: the chains disagree (not mixed, or stuck in different modes)"
        )
    elif not s["within_4_mcse"]:
        lines.append("  warning: the moments are more than 4 standard errors from the exact ones")
    return "\n".join(lines)
