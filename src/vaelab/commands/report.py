"""`vaelab report RUN [--out FILE]`: one self-contained HTML page of a run (writes RUN/report.html)."""

from __future__ import annotations

import argparse

from vaelab.commands.common import add_run_options, add_shared_options, done, with_threads


def cmd_report(args: argparse.Namespace) -> int:
    """`vaelab report`: write the run's self-contained HTML page.

    Args:
        args: the parsed flags: run, out, device, data_dir, seed, checkpoint, threads.
    """
    from vaelab.viz.report import write_report

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
    )
    add_run_options(p)
    add_shared_options(p, "seed", "threads", "quiet", seed="seed of the samples and interpolation pairs")
    p.add_argument("--out", help="HTML file (default RUN/report.html)")
    p.set_defaults(func=with_threads(cmd_report))
