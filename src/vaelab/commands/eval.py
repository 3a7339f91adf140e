"""`vaelab eval RUN`: ELBO, importance-sampled (or exact) log p(x), AIS, BDMC, the ELBO decomposition and
sample quality, into eval.json."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vaelab import evaluate as evaluate_module
from vaelab.commands.common import done
from vaelab.errors import ConfigError
from vaelab.io import atomic_write_json
from vaelab.runs import RunDir
from vaelab.train import distributed


def _row(name: str, est: float, se: float, bpd: float | None, settings: str) -> str:
    bpd_text = f"{bpd:9.4f}" if bpd is not None else " " * 9
    return f"{name:<22}{est:>11.2f}{se:>9.2f}{-est:>11.2f}{bpd_text}   {settings}"


def format_table(r: dict) -> str:
    """The human-readable summary printed by `vaelab eval`."""
    lines = [
        f"{r.get('run', 'model')}: {r.get('data', '?')} {r['split']} split, {r['num_images']} images, seed {r['seed']}"
        + (
            f", binarized by one fixed draw (seed {r['binarize_seed']})"
            if r.get("binarize") in ("dynamic", "static")
            else ""
        ),
        f"{'estimate':<22}{'log p(x)':>11}{'stderr':>9}{'NLL':>11}{'bits/dim':>9}   settings (nats per image)",
    ]
    if "exact" in r:
        x = r["exact"]
        lines.append(_row("exact (chain rule)", x["log_px"], x["stderr"], x["bits_per_dim"], "no sampling"))
    if "likelihood" in r:
        lines.append(f"likelihood: {r['likelihood']}")
    e, i = r.get("elbo"), r.get("importance")
    if e is not None and i is not None:
        parts = f" (E_q log p(x|z) {e['rec']:.2f}, KL {e['kl']:.2f})" if "rec" in e else ""
        lines.append(
            _row("ELBO", e["estimate"], e["stderr"], e["bits_per_dim"], f"K={i['num_samples']} draws{parts}")
        )
        lines.append(
            _row(
                "IS (IWAE bound)",
                i["log_px"],
                i["stderr"],
                i["bits_per_dim"],
                f"K={i['num_samples']}, mean ESS {i['ess_mean']:.1f}",
            )
        )
    if "ais" in r:
        a = r["ais"]
        lines.append(
            _row(
                "AIS",
                a["log_px"],
                a["stderr"],
                a["bits_per_dim"],
                f"T={a['steps']}, C={a['chains']}, L={a['leapfrog']}, {a['schedule']}, "
                f"acceptance {a['acceptance']:.2f}, chain spread {a['chain_spread']:.2f}, {a['num_images']} images",
            )
        )
    if "classification" in r:
        c = r["classification"]
        lines.append(
            f"classification error   {100 * c['error']:.2f}% +- {100 * c['stderr']:.2f}%"
            f"   argmax q(y|x), {c['errors']} of {c['num_images']} images"
        )
    if "ais" in r and "observation_model" in r["ais"] and "likelihood" not in r:
        lines.append(f"AIS {r['ais']['observation_model']}")
    if i is not None:
        curve = ", ".join(f"K={k}: {v['log_px']:.2f}" for k, v in i["iwae_curve"].items())
        lines.append(f"IWAE curve: {curve}")
    if "bdmc" in r:
        b = r["bdmc"]
        lines.append(
            f"BDMC on {b['num_data']} simulated images (T={b['steps']}, C={b['chains']}): lower {b['lower']:.2f}, "
            f"upper {b['upper']:.2f}, gap {b['gap']:.2f} +- {b['gap_stderr']:.2f}"
        )
    if "decomposition" in r:
        d = r["decomposition"]
        line = (
            f"decomposition: E_q log p(x|z) {d['rec']:.2f}, KL(q||p) {d['kl']:.2f}, ELBO {d['elbo']:.2f} = "
            f"free-energy form {d['free_energy_elbo']:.2f} (difference {d['forms_difference']:.3f} +- "
            f"{d['forms_difference_stderr']:.3f})"
        )
        if "gap" in d:
            line += f", gap log p(x) - ELBO = KL(q(z|x)||p(z|x)) {d['gap']:.2f} +- {d['gap_stderr']:.2f}"
        lines.append(line)
        if "active_units" in d:
            lines.append(
                f"active units {d['active_units']} of {d['latent_dim']}, I(x; z) {d['mutual_information']:.2f} nats "
                f"(at most log N = {d['mutual_information_max']:.2f})"
            )
    if "quality" in r:
        q = r["quality"]
        rate = f", {q['images_per_second']:.1f} images/s" if q.get("images_per_second") else ""
        lines.append(
            f"sample quality, {q['num_samples']} samples vs {q['num_test_images']} images: Fréchet distance "
            f"{q['frechet_distance']:.3f}, precision {q['precision']:.3f}, recall {q['recall']:.3f} (k={q['k']}){rate}"
        )
        lines.append(
            f"  classifier test accuracy {100 * q['classifier']['test_accuracy']:.2f}%; {q['features']}"
        )
    procs = f" over {r['processes']} processes" if r.get("processes", 1) > 1 else ""
    lines.append(f"time {r['seconds']:.1f} s{procs}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    nproc, threads = getattr(args, "nproc", None), getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    if nproc is not None and nproc != 1:
        if distributed.world().distributed:
            raise ConfigError("--nproc starts its own processes; under torchrun leave it out")
        if nproc < 1:
            raise ConfigError(f"--nproc must be >= 1, got {nproc}")
        rank_args = argparse.Namespace(**{**vars(args), "nproc": None})
        distributed.launch(nproc, run, (rank_args,), threads=threads)
        return 0
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        result = evaluate_module.evaluate(
            args.run,
            split=args.split,
            importance=args.importance,
            ais=args.ais,
            chains=args.chains,
            leapfrog=args.leapfrog,
            schedule=args.schedule,
            bdmc=args.bdmc,
            decomposition=args.decomposition,
            limit=args.limit,
            seed=args.seed,
            device=args.device,
            data_dir=args.data_dir,
            which=args.checkpoint,
            progress=not args.quiet,
            quality=args.quality,
        )
    finally:
        torch.set_num_threads(saved)
    if not distributed.world().main:
        return 0
    print(format_table(result))
    out = (
        Path(args.out)
        if args.out
        else RunDir.at(args.run).eval
        if Path(args.run).is_dir()
        else Path(args.run).with_suffix(".eval.json")
    )
    done(atomic_write_json(out, result))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="ELBO, importance sampling (or exact log p(x)), AIS, BDMC, decomposition, sample quality -> RUN/eval.json",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run folder (or a checkpoint file)")
    p.add_argument("--importance", type=int, default=1000, metavar="K", help="importance samples per image")
    p.add_argument(
        "--ais", type=int, default=0, metavar="T", help="AIS intermediate distributions (0: no AIS)"
    )
    p.add_argument("--chains", type=int, default=16, metavar="C", help="AIS chains per image")
    p.add_argument("--leapfrog", type=int, default=10, metavar="L", help="leapfrog steps per HMC transition")
    p.add_argument("--schedule", default="sigmoid", help="AIS schedule: sigmoid | geometric | linear")
    p.add_argument("--bdmc", type=int, default=0, metavar="N", help="BDMC on N simulated images (0: none)")
    p.add_argument(
        "--decomposition", action="store_true", help="the ELBO's parts, gap, active units, I(x; z)"
    )
    p.add_argument(
        "--quality",
        type=int,
        default=0,
        metavar="N",
        help="Fréchet distance, precision and recall of N samples vs N images, on the features of a classifier "
        "vaelab trains on the data set (not Inception: its weights cannot be downloaded here; 0: none)",
    )
    p.add_argument("--split", default="test", help="test | valid | train")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of every estimator's draws (per block of images)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument(
        "--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of the run"
    )
    p.add_argument("--data-dir", default=None, help="where the run's data set lives, if not where it was")
    p.add_argument("--out", default=None, help="JSON file (default RUN/eval.json)")
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="share IS, AIS and BDMC among N local processes (same per-image numbers as one); several "
        "nodes: torchrun -m vaelab eval",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads per process (default: cores / processes)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
