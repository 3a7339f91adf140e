"""`vaelab analogies RUN`: Kingma et al. (2014)'s figure 1 for a model that takes a label (cvae, m2, ...).

Each row keeps one test image's style z and each column decodes it at another label y
(`vaelab.viz.analogies`). The figure code (torch, matplotlib) is imported when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vaelab.commands.common import (
    add_figure_out,
    add_run_options,
    add_shared_options,
    done,
    open_run,
    positive_int,
    with_threads,
)
from vaelab.errors import VaelabError


def cmd_analogies(args: argparse.Namespace) -> int:
    """`vaelab analogies`: rows of test images' styles, each decoded at every label.

    Args:
        args: the parsed flags: run, device, checkpoint, data_dir, rows, seed, out.
    """
    from vaelab.viz.analogies import analogies_figure, why_no_analogies

    o = open_run(args.run, args.device, args.checkpoint)
    why = why_no_analogies(o.model)
    if why is not None:
        raise VaelabError(f"{o.run.root}: {why}")
    out = Path(args.out) if args.out else o.run.figures / "analogies.png"
    done(analogies_figure(o.model, o.split("test", args.data_dir), out, rows=args.rows, seed=args.seed))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `vaelab analogies`.

    Args:
        sub: the `vaelab` command's subparsers.
    """
    p = sub.add_parser(
        "analogies",
        help="each test image's style at every label (Kingma et al. 2014)",
        description="For a model whose decoder takes a label (cvae, m2, ...): each row keeps the style z of one "
        "test image (the mean of q(z|x,y) at its own label, or at its classifier's label for a model that "
        "classifies) and each column decodes it at another label y; the first column is the test image.",
    )
    add_run_options(p)
    p.add_argument("--rows", type=positive_int, default=10, help="test images, one per row")
    add_shared_options(p, "seed", "threads", "quiet", seed="seed of the draw of test images")
    add_figure_out(p, "RUN/figures/analogies.png")
    p.set_defaults(func=with_threads(cmd_analogies))
