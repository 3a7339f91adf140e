"""`vaelab vi`: fit a surrogate q to a toy posterior whose truth is known, and watch ELBO + KL = log p(D).

    vaelab vi --model banana --family flow --divergence reverse --steps 2000 --out runs/vi
    vaelab vi --model bimodal-1d --family full --divergence both --out runs/vi   (the two KLs side by side)
    vaelab vi --list

Writes into --out: vi-FAMILY-DIVERGENCE-posterior.png (p(z | D) against q), vi-FAMILY-DIVERGENCE-elbo.png
(the ELBO climbing toward log p(D), the KL gap shaded), vi-FAMILY-DIVERGENCE-trace.csv (every step), and
summary.json, shared with `vaelab mcmc` on the same model so the methods can be compared.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.commands import catalog
from vaelab.commands.common import add_shared_options
from vaelab.errors import VaelabError
from vaelab.io import atomic_write_bytes, atomic_write_json, atomic_write_text, check_can_create, ensure_dir

if TYPE_CHECKING:
    import numpy as np

    from vaelab.inference import toy


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `vaelab vi`.

    Args:
        subparsers: the `vaelab` command's subparsers.
    """
    p = subparsers.add_parser(
        "vi",
        help="variational inference on a toy posterior whose truth is known",
        description=__doc__,
    )
    p.add_argument("--model", help=f"toy model: {', '.join(catalog.TOY_MODELS)}")
    p.add_argument("--family", default="full", help=f"family of q: {', '.join(catalog.FAMILIES)}")
    p.add_argument(
        "--divergence",
        default="reverse",
        help="reverse: maximise the ELBO, i.e. minimise KL(q||p); forward: minimise KL(p||q); both: side by side",
    )
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps (Adam, cosine-decayed rate)")
    p.add_argument("--lr", type=float, default=0.02, help="learning rate")
    p.add_argument("--samples", type=int, default=16, help="draws from q per step")
    p.add_argument("--estimator", default="reparam", help="ELBO gradient estimator: reparam or score")
    p.add_argument("--components", type=int, default=2, help="mixture components (--family mixture)")
    p.add_argument("--kl-every", type=int, default=10, help="record the exact KL every this many steps")
    add_shared_options(p, "seed", "quiet", seed="seed of the run's torch.Generator")
    p.add_argument("--out", help="output folder")
    p.add_argument("--list", action="store_true", help="list the models, families, divergences and samplers")
    p.set_defaults(func=run)


def listing() -> str:
    """What `vaelab vi --list` prints."""
    from vaelab.inference import mcmc, toy, vi

    lines = ["models (--model, for vaelab vi and vaelab mcmc):"]
    lines += [f"  {name:<14} {cls.description}" for name, cls in toy.MODELS.items()]
    lines.append("families (--family):")
    lines += [f"  {name:<14} {cls.description}" for name, cls in vi.FAMILIES.items()]
    lines.append(
        "divergences (--divergence): reverse (the ELBO, mode-seeking), forward (mass-covering), both"
    )
    lines.append(f"estimators (--estimator): {', '.join(vi.ESTIMATORS)}")
    lines.append("samplers (vaelab mcmc --sampler):")
    lines += [f"  {name:<14} {s.description}" for name, s in mcmc.SAMPLERS.items()]
    return "\n".join(lines)


def choose(value: str | None, option: str, choices: Any) -> str:
    """`value` if it is one of `choices`; a one-line error listing them otherwise.

    Args:
        value: what the user gave (None: not given).
        option: the flag, for the message.
        choices: the allowed names.
    """
    names = ", ".join(choices)
    if value is None:
        raise VaelabError(f"{option} is required; choose from: {names}")
    if value not in choices:
        raise VaelabError(f"unknown {option.lstrip('-')} {value!r}; choose from: {names}")
    return value


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """These problems are tiny: intra-op threads only add waiting (badly so on a busy machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def update_summary(out: Path, model: toy.ToyModel, section: str, entries: dict[str, Any]) -> Path:
    """Write summary.json: the exact answer plus the `vi` and `mcmc` results gathered in this folder for
    this model (a summary of another model, or one that cannot be read, is replaced; an earlier entry whose
    moments cannot be read is dropped), and a side-by-side comparison of the moments.

    Args:
        out: the output folder.
        model: the toy model.
        section: 'vi' or 'mcmc'.
        entries: this run's results, by name.
    """
    import numpy as np

    path = out / "summary.json"
    try:
        old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        old = {}
    ex = model.exact
    summary: dict[str, Any] = {
        "model": model.name,
        "description": model.description,
        "labels": list(model.labels),
        "exact": {
            "log_evidence": ex.log_evidence,
            "log_evidence_error": ex.log_evidence_error,
            "method": ex.method,
            "mean": ex.mean.tolist(),
            "sd": np.sqrt(np.diag(ex.cov)).tolist(),
            "cov": ex.cov.tolist(),
        },
        "vi": {},
        "mcmc": {},
    }
    means = {"exact": summary["exact"]["mean"]}
    sds = {"exact": summary["exact"]["sd"]}
    same_model = isinstance(old, dict) and old.get("model") == model.name
    for part in ("vi", "mcmc"):
        earlier = old.get(part) if same_model else None
        new = entries if part == section else {}
        for key, r in {**(earlier if isinstance(earlier, dict) else {}), **new}.items():
            try:
                mean, sd = _moments(part, r, len(ex.mean))
            except (KeyError, TypeError, ValueError):
                if key in new:
                    raise
                continue  # an earlier entry whose moments cannot be read is dropped
            if key in new or all(np.isfinite(sd)):
                summary[part][key] = r
                means[f"{part} {key}"], sds[f"{part} {key}"] = mean, sd
    summary["comparison"] = {"mean": means, "sd": sds}
    return atomic_write_json(path, summary)


def _moments(part: str, r: Any, dim: int) -> tuple[list[float], list[float]]:
    """(mean, sd) of a summary entry: a vi entry has a mean and cov, an mcmc entry a mean and var, each of
    the model's dimension (a KeyError, TypeError or ValueError otherwise)."""
    import numpy as np

    mean = np.asarray(r["mean"], dtype=float).reshape(-1)
    cov = np.atleast_2d(np.asarray(r["cov"], dtype=float)) if part == "vi" else None
    var = np.diag(cov) if cov is not None else np.asarray(r["var"], dtype=float)
    if mean.shape != (dim,) or var.shape != (dim,):
        raise ValueError(f"moments of shapes {mean.shape} and {var.shape}, not ({dim},)")
    with np.errstate(invalid="ignore"):  # a negative variance (a hand-edited file): nan, then dropped
        return mean.tolist(), np.sqrt(var).tolist()


def write_trace(path: Path, trace: dict[str, np.ndarray], log_evidence: float) -> Path:
    """Every step as CSV: the ELBO estimate, and where computed the exact KLs and ELBO + KL.

    Args:
        path: the CSV file to write.
        trace: the per-step record of `vi.fit`.
        log_evidence: the exact log p(D).
    """
    import numpy as np

    buf = io.StringIO()
    buf.write("step,elbo,elbo_se,kl_q_p,kl_p_q,q_mass_on_grid,log_evidence,elbo_plus_kl\n")
    for i, step in enumerate(trace["step"]):
        row = [trace[k][i] for k in ("elbo", "elbo_se", "kl", "kl_forward", "q_mass")]
        row += [log_evidence, trace["elbo"][i] + trace["kl"][i]]
        buf.write(f"{step}," + ",".join("" if np.isnan(v) else f"{v:.10g}" for v in row) + "\n")
    return atomic_write_text(path, buf.getvalue())


def run(args: argparse.Namespace) -> int:
    """`vaelab vi`: fit q (or both KLs' q), write the figures, the trace and summary.json, print the numbers.

    Args:
        args: the parsed flags.
    """
    if args.list:
        print(listing())
        return 0
    import torch

    from vaelab.inference import toy, vi

    model = toy.get_model(choose(args.model, "--model", toy.MODELS))
    family = choose(args.family, "--family", vi.FAMILIES)
    divergence = choose(args.divergence, "--divergence", (*vi.DIVERGENCES, "both"))
    choose(args.estimator, "--estimator", vi.ESTIMATORS)
    if args.out is None:
        raise VaelabError("--out is required: the folder to write the figures and summary.json into")
    if args.kl_every < 1:
        raise VaelabError(f"--kl-every must be at least 1, got {args.kl_every}")
    if args.estimator == "score" and divergence != "reverse":
        raise VaelabError(
            "--estimator score applies to --divergence reverse (forward KL uses quadrature weights)"
        )
    out = check_can_create(args.out)  # created once every fit and figure succeeded: a failure leaves nothing
    divergences = list(vi.DIVERGENCES) if divergence == "both" else [divergence]
    generator = torch.Generator().manual_seed(args.seed)
    results = {}
    with one_thread():
        for div in divergences:
            r = vi.fit(
                model, family, div, args.steps, args.lr, args.samples, args.estimator,
                args.components, generator, args.kl_every, progress=not args.quiet,
            )  # fmt: skip
            r.summary["gradient_variance"] = vi.compare_estimators(model, r.family, args.samples, generator)
            r.summary["seed"] = args.seed
            results[div] = r
        figures = _render_figures(model, family, divergence, results)
    # Everything succeeded: only now write into --out (each file atomically).
    written = [
        write_trace(ensure_dir(out) / f"vi-{family}-{d}-trace.csv", r.trace, model.exact.log_evidence)
        for d, r in results.items()
    ]
    written += [atomic_write_bytes(out / name, png) for name, png in figures.items()]
    written.append(update_summary(out, model, "vi", {f"{family}-{d}": r.summary for d, r in results.items()}))
    for d, r in results.items():
        print(_report(model, family, d, r.summary))
    print(f"outputs in {out}/:")
    for p in written:
        print(f"  {Path(p).name}")
    return 0


def _render_figures(
    model: toy.ToyModel, family: str, divergence: str, results: dict[str, Any]
) -> dict[str, bytes]:
    """The posterior and ELBO figures as PNG bytes by file name, drawn in a scratch folder so that --out is
    written only once every figure has been drawn.

    Args:
        model: the toy model.
        family: the family of q.
        divergence: reverse, forward or both (for the file names).
        results: the fits (`vi.VIResult`) by divergence.
    """
    from vaelab.viz import inference as figures

    stem = f"vi-{family}-{divergence}"
    fits = [(_title(family, d), r.family.distribution()) for d, r in results.items()]
    traces = [(_title(family, d), r.trace, r.summary["kl_q_p"]) for d, r in results.items()]
    pngs: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="vaelab-vi-") as scratch:
        name = f"{stem}-posterior.png"
        pngs[name] = figures.posterior_vs_q(model, fits, Path(scratch) / name).read_bytes()
        name = f"{stem}-elbo.png"
        pngs[name] = figures.elbo_curve(traces, model.exact.log_evidence, Path(scratch) / name).read_bytes()
    return pngs


def _title(family: str, divergence: str) -> str:
    what = {"reverse": "min KL(q‖p): ELBO", "forward": "min KL(p‖q)"}[divergence]
    return f"{family} q, {what}"


def _report(model: toy.ToyModel, family: str, divergence: str, s: dict[str, Any]) -> str:
    from vaelab.inference.gradients import describe

    warning = ""
    if abs(s["q_mass_on_grid"] - 1) > 1e-3:
        warning = (
            f"\n  warning: the quadrature grid holds {s['q_mass_on_grid']:.4f} of q's mass (q is too narrow or too "
            "wide for it), so KL(q‖p) is not reliable"
        )
    return (
        f"{model.name}, {family} q, {divergence} KL: ELBO {s['elbo']:.4f} ± {s['elbo_standard_error']:.4f}, "
        f"KL(q‖p) {s['kl_q_p']:.4f} ({s['kl_q_p_method']}), ELBO + KL {s['elbo_plus_kl']:.4f} vs "
        f"log p(D) {s['log_evidence']:.4f} (off by {s['identity_residual_in_tolerance']:+.1f} tolerances); "
        f"KL(p‖q) {s['kl_p_q']:.4f}; {describe(s['gradient_variance'])}" + warning
    )
