"""`vaelab report RUN [--out FILE]`: one self-contained HTML page of a run (writes RUN/report.html)."""

from __future__ import annotations

import argparse

from vaelab.commands.common import add_run_options, done
from vaelab.viz.report import write_report


def cmd_report(args: argparse.Namespace) -> int:
    """`vaelab report`: write the run's self-contained HTML page.

    Args:
        args: the parsed flags: run, out, device, data_dir, seed, checkpoint.
    """
    done(write_report(args.run, args.out, args.device, args.data_dir, args.seed, args.checkpoint))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `vaelab report`.

    Args:
        sub: the `vaelab` command's subparsers.
    """
    p = sub.add_parser(
        "report",
        help="one self-contained HTML page of a run",
        description="Write RUN/report.html: config, curves, pictures and (when eval.json exists) the "
        "evaluation, with every image embedded so the file opens offline.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the samples and interpolation pairs")
    p.add_argument("--out", help="HTML file (default RUN/report.html)")
    p.set_defaults(func=cmd_report)
