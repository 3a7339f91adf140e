"""`vaelab sample | reconstruct | manifold | interpolate | latents | curves | figures`: pictures of a run.

The figure code (torch, matplotlib) is imported when a command runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.commands.common import (
    OpenRun,
    add_figure_out,
    add_run_options,
    add_shared_options,
    done,
    open_run,
    positive_int,
    with_threads,
)
from vaelab.errors import VaelabError
from vaelab.runs import RunDir

if TYPE_CHECKING:
    import torch


def _out(args: argparse.Namespace, opened: OpenRun, name: str) -> Path:
    return Path(args.out) if args.out else opened.run.figures / f"{name}.png"


def _train_codes(opened: OpenRun, data_dir: str | None) -> torch.Tensor:
    from vaelab.viz import figures as fig

    return fig.codes(opened.model, opened.split("train", data_dir), limit=10000)


def cmd_sample(args: argparse.Namespace) -> int:
    """`vaelab sample`: a grid of the run's samples.

    Args:
        args: the parsed flags: run, device, checkpoint, data_dir, n, seed, out.
    """
    from vaelab.models.protocol import capabilities
    from vaelab.viz import figures as fig

    o = open_run(args.run, args.device, args.checkpoint)
    _need(o, "samples")
    needs_codes = not capabilities(o.model).generative
    codes = _train_codes(o, args.data_dir) if needs_codes else None
    done(fig.samples_figure(o.model, _out(args, o, "samples"), n=args.n, seed=args.seed, train_codes=codes))
    return 0


def _need(o: OpenRun, what: str) -> None:
    from vaelab.viz import figures as fig

    if not fig.applicable(o.model)[what]:
        raise VaelabError(
            f"{what} do not apply to {type(o.model).__name__}: it has no encoder and decoder of one latent layer"
        )


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """`vaelab reconstruct`: test images beside their reconstructions.

    Args:
        args: the parsed flags: run, device, checkpoint, data_dir, n, noise, seed, out.
    """
    from vaelab.objectives.noise import parse_noise
    from vaelab.viz import figures as fig

    noise = parse_noise(args.noise) if args.noise else None
    o = open_run(args.run, args.device, args.checkpoint)
    _need(o, "reconstructions")
    data = o.split("test", args.data_dir)
    done(
        fig.reconstructions_figure(o.model, data, _out(args, o, "reconstructions"), args.n, noise, args.seed)
    )
    return 0


def _manifold_label(o: OpenRun, label: int | None) -> int | None:
    """--label checked against the run's model: None for an unlabelled model, 0..C-1 for a labelled one."""
    from vaelab.models.protocol import capabilities

    classes, name = capabilities(o.model).num_classes, type(o.model).__name__
    if classes is None:
        if label is not None:
            raise VaelabError(
                f"{o.run.root}: --label {label}: {name} takes no label y (its decoder maps z alone)"
            )
        _need(o, "manifold")
        return None
    if label is None:
        raise VaelabError(
            f"{o.run.root}: {name}'s decoder takes a label y: give --label Y (0..{classes - 1})"
        )
    if not 0 <= label < classes:
        raise VaelabError(f"{o.run.root}: --label must be a label 0..{classes - 1} of {name}, got {label}")
    return label


def cmd_manifold(args: argparse.Namespace) -> int:
    """`vaelab manifold`: the decoded grid over a latent plane (at label --label for a labelled model).

    Args:
        args: the parsed flags: run, device, checkpoint, data_dir, n, dims, grid_range, label, out.
    """
    from vaelab.viz import figures as fig
    from vaelab.viz.label_manifold import label_manifold_figure

    o = open_run(args.run, args.device, args.checkpoint)
    label = _manifold_label(o, args.label)
    dims = None
    if args.dims:
        try:
            a, b = (int(v) for v in args.dims.split(","))
        except ValueError:
            raise VaelabError(f"--dims expects two integers like 0,1, got '{args.dims}'") from None
        dims = (a, b)
    data = o.split("test", args.data_dir)
    try:
        if label is None:
            path = fig.manifold_figure(
                o.model, data, _out(args, o, "manifold"), n=args.n, dims=dims, grid_range=args.grid_range
            )
        else:
            out = _out(args, o, f"manifold-y{label}")
            path = label_manifold_figure(o.model, data, out, label, args.n, dims, args.grid_range)
    except ValueError as e:
        raise VaelabError(str(e)) from None
    done(path)
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    """`vaelab interpolate`: linear and spherical latent interpolations.

    Args:
        args: the parsed flags: run, device, checkpoint, data_dir, pairs, steps, seed, out.
    """
    from vaelab.viz import figures as fig

    o = open_run(args.run, args.device, args.checkpoint)
    _need(o, "interpolations")
    data = o.split("test", args.data_dir)
    done(
        fig.interpolations_figure(
            o.model, data, _out(args, o, "interpolations"), args.pairs, args.steps, args.seed
        )
    )
    return 0


def cmd_latents(args: argparse.Namespace) -> int:
    """`vaelab latents`: test-set posterior means coloured by label.

    Args:
        args: the parsed flags: run, device, checkpoint, data_dir, limit, out.
    """
    from vaelab.viz import figures as fig

    o = open_run(args.run, args.device, args.checkpoint)
    _need(o, "latents")
    done(
        fig.latents_figure(
            o.model, o.split("test", args.data_dir), _out(args, o, "latents"), limit=args.limit
        )
    )
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    """`vaelab curves`: the training curves from metrics.jsonl.

    Args:
        args: the parsed flags: run, out.
    """
    from vaelab.viz import figures as fig

    run = RunDir.at(args.run)
    history = run.read_metrics()
    if not history:
        raise VaelabError(f"{run.metrics}: no metrics yet (train the run first)")
    done(fig.curves_figure(history, Path(args.out) if args.out else run.figures / "curves.png"))
    return 0


def write_figures(
    run_path: str | Path, device: str = "cpu", data_dir: str | None = None, seed: int = 0
) -> list[Path]:
    """Every figure of a run that applies to its model into RUN/figures/ (`vaelab figures`, end of `vaelab train`):
    the set `vaelab.viz.figureset` plans, one line per reason for those not drawn.

    Args:
        run_path: the run folder.
        device: where the model is loaded.
        data_dir: where the run's data set lives, if not where it was.
        seed: the seed of the samples and interpolation pairs.
    """
    from vaelab.models.protocol import capabilities
    from vaelab.viz import figures as fig
    from vaelab.viz.figureset import draw_figures, skipped_lines

    o = open_run(str(run_path), device)
    can = fig.applicable(o.model)
    wants_test = capabilities(o.model).labelled or any(v for k, v in can.items() if k != "samples")
    test = o.split("test", data_dir) if wants_test else None
    needs_codes = can["samples"] and not capabilities(o.model).generative
    codes = _train_codes(o, data_dir) if needs_codes else None
    drawn, skipped = draw_figures(o.model, o.run.figures, test, codes, o.run.read_metrics(), seed)
    for line in skipped_lines(skipped):
        print(line)
    paths = list(drawn.values())
    done(*paths)
    return paths


def cmd_figures(args: argparse.Namespace) -> int:
    """`vaelab figures`: every figure of a run into RUN/figures/.

    Args:
        args: the parsed flags: run, device, data_dir, seed.
    """
    write_figures(args.run, args.device, args.data_dir, args.seed)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the figure commands (sample, reconstruct, manifold, interpolate, latents, curves, figures).

    Args:
        sub: the `vaelab` command's subparsers.
    """
    p = sub.add_parser("sample", help="grid of decoded prior draws")
    add_run_options(p)
    p.add_argument("-n", type=positive_int, default=64, help="number of samples")
    add_shared_options(p, "seed", "threads", "quiet", seed="seed of the draws")
    add_figure_out(p, "RUN/figures/samples.png")
    p.set_defaults(func=with_threads(cmd_sample))

    p = sub.add_parser("reconstruct", help="test images beside their reconstructions")
    add_run_options(p)
    p.add_argument("-n", type=positive_int, default=32, help="number of test images")
    p.add_argument(
        "--noise", help="show denoising: corrupt the encoder's input, gaussian:SIGMA or masking:SHARE"
    )
    add_shared_options(p, "seed", "threads", "quiet", seed="seed of the noise")
    add_figure_out(p, "RUN/figures/reconstructions.png")
    p.set_defaults(func=with_threads(cmd_reconstruct))

    p = sub.add_parser("manifold", help="decoded grid over a 2-D latent plane")
    add_run_options(p)
    p.add_argument("-n", type=positive_int, default=20, help="grid side")
    p.add_argument(
        "--dims", help="two latent dimensions, e.g. 0,3 (default: the plane for D=2, else top two PCs)"
    )
    p.add_argument(
        "--range",
        dest="grid_range",
        choices=("prior", "codes"),
        default="prior",
        help="grid at the prior's quantiles or over the test codes' own spread",
    )
    p.add_argument(
        "--label",
        type=int,
        metavar="Y",
        help="for a model whose decoder takes a label (cvae, m2, adgm): decode the grid at label Y; the plane's "
        "test codes are encoded at their own labels (or their classifier's)",
    )
    add_shared_options(p, "threads", "quiet")
    add_figure_out(p, "RUN/figures/manifold.png, or manifold-yY.png with --label")
    p.set_defaults(func=with_threads(cmd_manifold))

    p = sub.add_parser("interpolate", help="linear and spherical latent interpolations")
    add_run_options(p)
    p.add_argument("--pairs", type=positive_int, default=6, help="pairs of test images")
    p.add_argument("--steps", type=positive_int, default=10, help="points on each path")
    add_shared_options(p, "seed", "threads", "quiet", seed="seed of the pairs")
    add_figure_out(p, "RUN/figures/interpolations.png")
    p.set_defaults(func=with_threads(cmd_interpolate))

    p = sub.add_parser("latents", help="test-set posterior means coloured by label")
    add_run_options(p)
    p.add_argument("--limit", type=positive_int, default=5000, help="at most this many test images")
    add_shared_options(p, "threads", "quiet")
    add_figure_out(p, "RUN/figures/latents.png")
    p.set_defaults(func=with_threads(cmd_latents))

    p = sub.add_parser("curves", help="training curves from metrics.jsonl")
    p.add_argument("run", metavar="RUN")
    add_shared_options(p, "quiet")
    add_figure_out(p, "RUN/figures/curves.png")
    p.set_defaults(func=cmd_curves)

    p = sub.add_parser("figures", help="every figure of a run into RUN/figures/")
    add_run_options(p)
    add_shared_options(p, "seed", "threads", "quiet", seed="seed of the samples and interpolation pairs")
    p.set_defaults(func=with_threads(cmd_figures))
