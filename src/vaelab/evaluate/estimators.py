"""Evaluation as a table of estimators, in the spirit of `torch.distributions.kl.register_kl`.

An estimator is one module and one registration: `@register_estimator(name, applies=...)` on a function that
takes a `Context` (the model, its `capabilities`, the data, the `EvalSettings`, what earlier estimators
found) and returns a typed, frozen `Estimate`. `applies(caps, settings)` says when it runs, from the model's
capabilities and the settings alone; `refuse` (optional) raises the one-line error when the settings ask for
it and the model cannot have it, before anything is computed. eval.json, the `vaelab eval` table and the
report are made from the Estimates: `Estimate.to_json` (or the registration's own `to_json`) writes its
block under its name, and the registration's `row` and `notes` give its lines of the table.

`ESTIMATORS` holds the registrations; `vaelab.evaluate.run.TABLE` names the package's own in the order they
run and print (estimators registered elsewhere, e.g. by a plugin, come after them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from vaelab.config import Config
from vaelab.data import Prepared
from vaelab.errors import ConfigError, VaelabError
from vaelab.evaluate.settings import EvalSettings
from vaelab.models.protocol import Capabilities
from vaelab.registry import Registry
from vaelab.train import distributed


def bits_per_dim(nll: float, dims: int) -> float:
    """Negative log-likelihood in nats per image as bits per dimension.

    Args:
        nll: nats per image.
        dims: dimensions (pixels times channels) of one image.
    """
    return nll / (dims * math.log(2))


def datum_dims(data: Prepared | torch.Tensor) -> int:
    """The dimensions bits/dim divides by: an image's pixels times channels; a table row's columns (one
    value each), not the 2 x W numbers its encoding holds (values and mask, a categorical column one-hot).

    Args:
        data: a prepared split (its `table` set for a table), or a batch of images [N, C, H, W].
    """
    table = getattr(data, "table", None)
    if table is not None:
        return len(table.columns)
    return int(torch.Size(data.shape if isinstance(data, Prepared) else data.shape[1:]).numel())


@dataclass(frozen=True)
class Estimate:
    """What one estimator found, typed: eval.json's block, the table's row and the report's line come from it.

    Args:
        name: the estimator's name, which is its key in eval.json.
        method: what was computed, in words, with its paper.
        settings: the settings it ran with (written first in its block: K, T, chains, ...).
        log_px: its estimate of (a bound on) log p(x), nats per image; None when it estimates something else.
        stderr: the standard error of `log_px` over images.
        n: how many images it is over (None when not images of the split).
        seconds: its wall time (None when not timed).
        extras: everything else it reports, written after the estimate (diagnostics, parts, ...).
        per_datum: one value per image (log p(x), k-hat, ...), written as "per_datum" when given.
        result: the estimator's full result for later estimators (not written), e.g. an ImportanceResult.
    """

    name: str
    method: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    log_px: float | None = None
    stderr: float | None = None
    n: int | None = None
    seconds: float | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)
    per_datum: torch.Tensor | None = field(default=None, compare=False, repr=False)
    result: Any = field(default=None, compare=False, repr=False)

    def to_json(self, dims: int) -> dict[str, Any]:
        """The generic eval.json block: method, settings, log_px, stderr, nll, bits_per_dim, extras,
        num_images, seconds, per_datum (each only when there is one).

        Args:
            dims: dimensions of one image, for bits per dimension.
        """
        out: dict[str, Any] = {"method": self.method} if self.method else {}
        out.update(self.settings)
        if self.log_px is not None:
            out.update(
                log_px=self.log_px,
                stderr=self.stderr,
                nll=-self.log_px,
                bits_per_dim=bits_per_dim(-self.log_px, dims),
            )
        out.update(self.extras)
        if self.n is not None:
            out["num_images"] = self.n
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.per_datum is not None:
            out["per_datum"] = self.per_datum.tolist()
        return out


@dataclass
class Context:
    """What an estimator is given: the model and what it can do, the data, the settings, earlier estimates.

    Args:
        model: the model, on its device, in eval mode.
        caps: `capabilities(model)`.
        settings: the evaluation's settings.
        data: the evaluated split.
        n: how many of its images are evaluated (the settings' limit applied).
        dims: dimensions of one image.
        device: this rank's device.
        config: the run's config (None when a bare model was given).
        estimates: what the estimators that ran before found, by name.
    """

    model: nn.Module
    caps: Capabilities
    settings: EvalSettings
    data: Prepared
    n: int
    dims: int
    device: torch.device
    config: Config | None = None
    estimates: dict[str, Estimate] = field(default_factory=dict)

    @property
    def progress(self) -> bool:
        """Draw progress bars: asked for, and this is rank 0."""
        return self.settings.progress and distributed.world().main

    @property
    def model_name(self) -> str:
        """The model's class name, for messages."""
        return type(self.model).__name__


class WeightReduction(Protocol):
    """A per-image summary of the importance log-weights, streamed chunk by chunk during the IS pass."""

    def add(self, log_w: torch.Tensor) -> None:
        """Take the next chunk of log-weights [c, B] (float64)."""

    def value(self) -> torch.Tensor:
        """The summary of every image of the block, [B]."""


Result = Estimate | Sequence[Estimate] | None
Lines = Callable[[Estimate, Mapping[str, Any]], list[str]]


@dataclass(frozen=True)
class Estimator:
    """One registration in the table of estimators.

    Args:
        name: its name, the key of its block in eval.json.
        run: `run(ctx) -> Estimate | [Estimate, ...] | None`; returned Estimates are stored by their names
            (one may update an earlier estimate, as the decomposition adds rec and KL to the ELBO's).
        applies: `applies(caps, settings) -> bool`: whether it runs for this model and these settings.
        refuse: `refuse(ctx)` raises the one-line error when the settings ask for it and it cannot apply;
            called for every applying estimator before any runs.
        needs: names of estimators whose estimates it reads; it is skipped when one of them did not run.
        every_rank: True when its work is shared among the ranks of a process group (it then runs on each);
            False for rank 0 alone.
        weights: a per-image reduction of the importance log-weights it needs from the IS pass:
            `weights(num_samples, batch, device) -> WeightReduction`; its values reach the IS result.
        label: the label of its row in the `vaelab eval` table (rows need a log_px).
        row: `row(est) -> str`: the settings column of its row.
        notes: `notes(est, meta) -> [line, ...]`: its lines under the rows (`meta`: what was evaluated, e.g.
            split, seed and the "likelihood" note of a model without one).
        to_json: `to_json(est, dims) -> dict` when its block is not `Estimate.to_json`'s.
        description: one line for listings.
    """

    name: str
    run: Callable[[Context], Result]
    applies: Callable[[Capabilities, EvalSettings], bool]
    refuse: Callable[[Context], None] | None = None
    needs: tuple[str, ...] = ()
    every_rank: bool = True
    weights: Callable[[int, int, torch.device], WeightReduction] | None = None
    label: str | None = None
    row: Callable[[Estimate], str] | None = None
    notes: Lines | None = None
    to_json: Callable[[Estimate, int], dict[str, Any]] | None = None
    description: str = ""

    def block(self, est: Estimate, dims: int) -> dict[str, Any]:
        """Its eval.json block.

        Args:
            est: an Estimate it returned.
            dims: dimensions of one image.
        """
        return self.to_json(est, dims) if self.to_json is not None else est.to_json(dims)


ESTIMATORS: Registry[Estimator] = Registry("estimator")


def register_estimator(
    name: str,
    *,
    applies: Callable[[Capabilities, EvalSettings], bool],
    replace: bool = False,
    **options: Any,
) -> Callable[[Callable[[Context], Result]], Callable[[Context], Result]]:
    """Decorator: register the decorated `run(ctx)` as estimator `name` (see `Estimator` for the options).

    Args:
        name: the estimator's name, its key in eval.json.
        applies: `applies(caps, settings) -> bool`, when it runs.
        replace: allow replacing an estimator of the same name.
        **options: the other fields of `Estimator` (refuse, needs, every_rank, weights, label, row, notes,
            to_json, description).
    """

    def add(run: Callable[[Context], Result]) -> Callable[[Context], Result]:
        ESTIMATORS.register(name, Estimator(name, run, applies, **options), replace=replace)
        return run

    return add


# --- refusals shared by several estimators ---------------------------------------------------------------

_NEEDS = {
    "log_importance_weights": lambda c: c.importance,
    "prior": lambda c: c.prior,
    "encode": lambda c: c.encode,
    "decode": lambda c: c.decode,
}


def require(model: nn.Module, caps: Capabilities, *names: str, what: str) -> None:
    """A one-line error when a model lacks what an estimator needs (the autoencoder has no likelihood).

    Args:
        model: the model (for its name).
        caps: its capabilities.
        *names: the protocol members needed: log_importance_weights, prior, encode, decode.
        what: the estimator, as the message names it ("annealed importance sampling").
    """
    missing = [n for n in names if not _NEEDS[n](caps)]
    if missing:
        why = "" if caps.importance else " (a deterministic autoencoder defines no p(x))"
        raise VaelabError(
            f"{what} does not apply to {type(model).__name__}: it has no {', '.join(missing)}{why}"
        )
    if "decode" in names and caps.labelled:
        raise VaelabError(
            f"{what} does not apply to {type(model).__name__}: its decoder p(x|y,z) also takes a label"
        )


def refuse_for_exact(ctx: Context) -> None:
    """The refusal of --ais, --bdmc and --decomposition for a model that computes log p(x) exactly.

    Args:
        ctx: the evaluation's context.
    """
    if ctx.caps.exact_likelihood:
        raise ConfigError(
            f"{ctx.model_name} computes log p(x) exactly (chain rule): --ais, --bdmc and --decomposition "
            "do not apply"
        )


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean over data and its standard error (sample std / sqrt(N)).

    Args:
        values: one value per datum.
    """
    v = values.double()
    se = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se
