"""Every figure of a run that applies to its model, as one table: `vaelab figures`, the end of `vaelab train`
and the report draw the same set.

Each entry is either a function that draws the figure into a given PNG or the one line that says why it is
not drawn (the model has no single latent layer, the test data is missing, no metrics yet); a table run's
rows are not pictures, so its image figures are one line and `vaelab.viz.tables` draws columns and
marginals instead. A figure that finds at drawing time that the run's data cannot give it (interpolations of a one-image test split) raises
`NotDrawn`, and `draw_figures` turns that into the same kind of line: one figure that cannot be drawn never
stops the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from vaelab.data import Prepared
from vaelab.models.protocol import capabilities
from vaelab.viz import figures as fig
from vaelab.viz.analogies import analogies_figure, why_no_analogies
from vaelab.viz.grids import NotDrawn
from vaelab.viz.tables import NOT_PICTURES, columns_figure, is_table_model, marginals_figure

FIGURES = ("samples", "reconstructions", "manifold", "interpolations", "latents", "curves")
LABELLED_FIGURES = ("analogies",)  # also planned for a model that takes a label (cvae, m2, adgm)

Draw = Callable[[Path], Path]


def figure_plan(
    model: object,
    test: Prepared | None,
    train_codes: torch.Tensor | None = None,
    history: list[dict] | None = None,
    seed: int = 0,
    no_test: str = "the run's test data is not loaded",
) -> dict[str, Draw | str]:
    """For each of `FIGURES` (and `LABELLED_FIGURES` for a model that takes a label), the function that draws
    it into a PNG, or the one line saying why it is not drawn.

    Args:
        model: the run's model.
        test: the prepared test split, or None when it could not be loaded.
        train_codes: codes of training images (`figures.codes`), which a model without a prior or sampler
            samples from; None when they are not at hand.
        history: metrics.jsonl's records (None or empty: no curves).
        seed: the seed of the samples and interpolation pairs.
        no_test: why `test` is None (the line of each figure that needs it).
    """
    if is_table_model(model):
        return _table_plan(model, test, history, seed, no_test)
    can = fig.applicable(model)
    name = type(model).__name__
    plan: dict[str, Draw | str] = {}
    if not can["samples"]:
        plan["samples"] = f"{name} neither samples nor decodes"
    elif not capabilities(model).generative and train_codes is None:
        plan["samples"] = f"{name} has no prior: its samples need the codes of training images"
    else:
        plan["samples"] = lambda p: fig.samples_figure(model, p, seed=seed, train_codes=train_codes)
    latent: dict[str, Callable[[Prepared, Path], Path]] = {
        "reconstructions": lambda data, p: fig.reconstructions_figure(model, data, p),
        "manifold": lambda data, p: fig.manifold_figure(model, data, p),
        "interpolations": lambda data, p: fig.interpolations_figure(model, data, p, seed=seed),
        "latents": lambda data, p: fig.latents_figure(model, data, p),
    }
    for key, draw in latent.items():
        if not can[key]:
            plan[key] = f"{name} has no single latent layer to show"
        elif test is None:
            plan[key] = no_test
        else:
            plan[key] = lambda p, draw=draw: draw(test, p)
    if capabilities(model).labelled:
        why = why_no_analogies(model)
        if why is None and test is None:
            why = no_test
        plan["analogies"] = why if why is not None else lambda p: analogies_figure(model, test, p, seed=seed)
    if history:
        plan["curves"] = lambda p: fig.curves_figure(history, p, model=model)
    else:
        plan["curves"] = "no metrics yet: the run has not finished an epoch"
    return plan


def _table_plan(
    model: object, test: Prepared | None, history: list[dict] | None, seed: int, no_test: str
) -> dict[str, Draw | str]:
    """A table model's figures (`vaelab.viz.tables`): the image figures are one line; the latent scatter,
    columns, marginals and curves are drawn."""
    plan: dict[str, Draw | str] = dict.fromkeys(
        ("samples", "reconstructions", "manifold", "interpolations"), NOT_PICTURES
    )
    if test is None:
        plan.update(dict.fromkeys(("latents", "columns", "marginals"), no_test))
    else:
        plan["latents"] = lambda p: fig.latents_figure(model, test, p)
        plan["columns"] = lambda p: columns_figure(model, test, p)
        if capabilities(model).prior:
            plan["marginals"] = lambda p: marginals_figure(model, test, p, seed=seed)
        else:
            plan["marginals"] = f"{type(model).__name__} has no prior to draw rows from"
    if history:
        plan["curves"] = lambda p: fig.curves_figure(history, p, model=model)
    else:
        plan["curves"] = "no metrics yet: the run has not finished an epoch"
    return plan


def draw_figures(
    model: object,
    folder: str | os.PathLike,
    test: Prepared | None,
    train_codes: torch.Tensor | None = None,
    history: list[dict] | None = None,
    seed: int = 0,
    no_test: str = "the run's test data is not loaded",
) -> tuple[dict[str, Path], dict[str, str]]:
    """Draw every figure of `figure_plan` into folder/NAME.png: ({name: path written}, {name: why not drawn}).

    Args:
        model: the run's model.
        folder: where the PNGs go (RUN/figures).
        test: the prepared test split, or None when it could not be loaded.
        train_codes: codes of training images, for a model without a prior or sampler.
        history: metrics.jsonl's records.
        seed: the seed of the samples and interpolation pairs.
        no_test: why `test` is None.
    """
    drawn: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for key, make in figure_plan(model, test, train_codes, history, seed, no_test).items():
        if isinstance(make, str):
            skipped[key] = make
            continue
        try:
            drawn[key] = make(Path(folder) / f"{key}.png")
        except NotDrawn as e:
            skipped[key] = str(e)
    return drawn, skipped


def skipped_lines(skipped: dict[str, str]) -> list[str]:
    """One line per reason: "not drawn (REASON): name, name" (figures skipped for one reason share a line).

    Args:
        skipped: {figure: why not drawn}, as `draw_figures` returns it.
    """
    by_reason: dict[str, list[str]] = {}
    for key, why in skipped.items():
        by_reason.setdefault(why, []).append(key)
    return [f"not drawn ({why}): {', '.join(keys)}" for why, keys in by_reason.items()]
