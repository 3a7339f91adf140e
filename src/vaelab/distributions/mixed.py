"""The mixed-type likelihood of a table's row: Normal, Bernoulli and Categorical columns, every constant kept.

A table's row is held as [2, 1, W] (`vaelab.data.tables`): channel 0 the encoded values over W slots (a
continuous column standardised, (x - mean) / sd, in one slot; a binary column 0/1 in one; a categorical
column one-hot over one slot per level), channel 1 the observed mask (1 observed, 0 missing, the same over a
column's slots). The encoder sees both; the decoder's channel 0 gives each slot's parameter (a continuous
column's standardised mean, a binary column's logit, a categorical column's logits).

log p(x | z) sums, over the observed columns only, the log-densities of torch.distributions:
`Normal(mean + sd * loc, sd * scale)` of a continuous column in the user's units (so the standardisation's
Jacobian, -log sd, is in it), `Bernoulli(logits)` of a binary one and `Categorical(logits)` of a categorical
one. Nothing is dropped, so log p(x) is a true log-density (continuous columns in the user's units,
discrete ones as probabilities) and importance sampling and AIS estimate it; a missing cell is left out of
the likelihood, which is then that of the observed cells (the missing ones marginalised).

Continuous columns' variances: one learned per column (start 1: a standardised column's variance), never
below `model.variance_floor`; `model.gaussian_variance=fixed` keeps `model.gaussian_sigma`^2, and `decoder`
adds the decoder's channel 1 (otherwise unused) to it, a variance per row.

The layout (each slot's kind and column, each continuous column's mean and sd) comes in explicitly, as the
likelihood option `table` (`table_layout` reads it): every model builds its likelihood from its config
(`vaelab.models.vae.likelihood_from`), and training writes `model.table` from the table it read
(`TableSchema.model_table`), so a run's config, a checkpoint's and an export's config.json rebuild the
same likelihood. It is also held in buffers, which a checkpoint carries: a run saved before `model.table`
existed is built without a layout and gets it with its weights (`ready`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Categorical, Distribution, Normal, constraints

from vaelab.distributions.likelihoods import LIKELIHOODS, Likelihood
from vaelab.errors import ConfigError

# A slot's kind, in the `kind` buffer.
CONTINUOUS, BINARY, CATEGORICAL = 0, 1, 2
KIND_NAMES = ("continuous", "binary", "categorical")


class TableLayout(NamedTuple):
    """Per slot: its kind (CONTINUOUS, BINARY, CATEGORICAL), its column's index, and the column's mean and sd
    (continuous columns; 0 and 1 for the others). A categorical column's slots are consecutive."""

    kinds: tuple[int, ...]
    columns: tuple[int, ...]
    mean: tuple[float, ...]
    sd: tuple[float, ...]


CODES = {name: i for i, name in enumerate(KIND_NAMES)}


def table_layout(table: Mapping[str, Any]) -> TableLayout:
    """The layout of `model.table`, {"columns": [{"kind", "width", "mean", "sd"}, ...]}, or a ConfigError.

    Args:
        table: each column's kind (continuous, binary, categorical), width (its slots: 1, or a categorical
            column's levels), mean and sd (a continuous column's training statistics).
    """
    kinds: list[int] = []
    cols: list[int] = []
    mean: list[float] = []
    sd: list[float] = []
    try:
        for j, c in enumerate(table["columns"]):
            code, width = CODES[c["kind"]], int(c.get("width", 1))
            m, s = (float(c["mean"]), float(c["sd"])) if code == CONTINUOUS else (0.0, 1.0)
            if width < 1 or (code != CATEGORICAL and width != 1) or not s > 0:
                raise ValueError(f"column {j}: {c}")
            kinds += [code] * width
            cols += [j] * width
            mean += [m] * width
            sd += [s] * width
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(
            f"model.table is not a table's layout ({type(e).__name__}: {e}); it holds "
            '{"columns": [{"kind", "width", "mean", "sd"}, ...]}, written by training'
        ) from None
    if not kinds:
        raise ConfigError("model.table has no columns")
    return TableLayout(tuple(kinds), tuple(cols), tuple(mean), tuple(sd))


class Slots(NamedTuple):
    """Index tensors of a layout: continuous slots, binary slots, and each categorical column's (start, stop)."""

    continuous: torch.Tensor
    binary: torch.Tensor
    groups: tuple[tuple[int, int], ...]
    log_sd: torch.Tensor  # log sd of each continuous slot


def slots_of(kind: torch.Tensor, column: torch.Tensor, sd: torch.Tensor) -> Slots:
    """The index tensors of a layout held as per-slot tensors (`kind`, `column`, `sd`)."""
    kinds, cols = kind.tolist(), column.tolist()
    groups: list[tuple[int, int]] = []
    for i, (k, c) in enumerate(zip(kinds, cols)):
        if k != CATEGORICAL:
            continue
        if groups and cols[groups[-1][0]] == c and groups[-1][1] == i:
            groups[-1] = (groups[-1][0], i + 1)
        else:
            groups.append((i, i + 1))
    cont = torch.tensor(
        [i for i, k in enumerate(kinds) if k == CONTINUOUS], dtype=torch.long, device=kind.device
    )
    binary = torch.tensor(
        [i for i, k in enumerate(kinds) if k == BINARY], dtype=torch.long, device=kind.device
    )
    return Slots(cont, binary, tuple(groups), sd.index_select(0, cont).log())


class MixedTable(Distribution):
    """p(x | z) of table rows: batch `loc.shape[:-1]`, event (2, 1, W) (values and observed mask).

    Args:
        loc: [..., W] continuous slots' standardised means (other slots: ignored).
        scale: [..., W] continuous slots' standardised sds (other slots: ignored).
        logits: [..., W] binary slots' logits and categorical slots' logits (other slots: ignored).
        slots: the layout's index tensors.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, logits: torch.Tensor, slots: Slots) -> None:
        self.loc, self.scale, self.logits, self.slots = loc, scale, logits, slots
        super().__init__(loc.shape[:-1], torch.Size((2, 1, loc.shape[-1])), validate_args=False)

    def column_log_probs(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Each column's log-density, observed or not: ([..., continuous], [..., binary], [[...] per
        categorical column]); continuous ones in the user's units (-log sd included)."""
        v = value[..., 0, 0, :]
        s = self.slots
        cont = (
            Normal(
                self.loc.index_select(-1, s.continuous),
                self.scale.index_select(-1, s.continuous),
                validate_args=False,
            ).log_prob(v.index_select(-1, s.continuous))
            - s.log_sd
        )
        binary = Bernoulli(logits=self.logits.index_select(-1, s.binary), validate_args=False).log_prob(
            v.index_select(-1, s.binary)
        )
        cats = [
            Categorical(logits=self.logits[..., a:b], validate_args=False).log_prob(v[..., a:b].argmax(-1))
            for a, b in s.groups
        ]
        return cont, binary, cats

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        observed = value[..., 1, 0, :] > 0.5
        s = self.slots
        cont, binary, cats = self.column_log_probs(value)
        zero = cont.new_zeros(())
        total = torch.where(observed.index_select(-1, s.continuous), cont, zero).sum(-1)
        total = total + torch.where(observed.index_select(-1, s.binary), binary, zero).sum(-1)
        for (a, _), lp in zip(s.groups, cats):
            total = total + torch.where(observed[..., a], lp, zero)
        return total

    def _channel(self, values: torch.Tensor) -> torch.Tensor:
        """Values [..., W] with the all-observed mask, as rows [..., 2, 1, W]."""
        return torch.stack([values, torch.ones_like(values)], dim=-2).unsqueeze(-2)

    @property
    def mean(self) -> torch.Tensor:
        """Rows of expected encoded values: standardised means, Bernoulli probabilities, Categorical
        probabilities over a column's one-hot slots."""
        s = self.slots
        out = self.loc.clone()
        out[..., s.binary] = torch.sigmoid(self.logits[..., s.binary])
        for a, b in s.groups:
            out[..., a:b] = torch.softmax(self.logits[..., a:b], dim=-1)
        return self._channel(out)

    @property
    def mode(self) -> torch.Tensor:
        """Rows of each column's most likely value (continuous: its mean; a category: its one-hot)."""
        s = self.slots
        out = self.loc.clone()
        out[..., s.binary] = (self.logits[..., s.binary] > 0).to(out.dtype)
        for a, b in s.groups:
            out[..., a:b] = F.one_hot(self.logits[..., a:b].argmax(-1), b - a).to(out.dtype)
        return self._channel(out)

    def sample_with(self, sample_shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        """Encoded rows drawn with `generator`: Normal, Bernoulli and Categorical draws per column.

        Args:
            sample_shape: the leading shape of the draws.
            generator: the random stream.
        """
        shape = torch.Size(sample_shape) + self.loc.shape
        kw = {"generator": generator, "device": self.loc.device, "dtype": self.loc.dtype}
        s = self.slots
        out = self.loc + self.scale * torch.randn(shape, **kw)
        u = torch.rand(shape, **kw)
        out[..., s.binary] = (u[..., s.binary] < torch.sigmoid(self.logits[..., s.binary])).to(out.dtype)
        for a, b in s.groups:
            cdf = torch.softmax(self.logits[..., a:b], dim=-1).cumsum(-1).expand(*shape[:-1], b - a)
            pick = torch.searchsorted(cdf.contiguous(), u[..., a : a + 1].contiguous()).clamp_max(b - a - 1)
            out[..., a:b] = F.one_hot(pick.squeeze(-1), b - a).to(out.dtype)
        return self._channel(out)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        return self.sample_with(tuple(sample_shape), None)


@LIKELIHOODS.register("mixed")
class MixedLikelihood(Likelihood):
    """Table rows: Normal, Bernoulli and Categorical columns (module docstring), normalising constants kept."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        gaussian_variance: str = "shared",
        gaussian_sigma: float = 0.1,
        variance_floor: float = 1e-4,
        gaussian_mean: str = "identity",
        table: Mapping[str, Any] | None = None,
        **_: object,
    ) -> None:
        super().__init__(shape)
        if len(shape) != 3 or shape[0] != 2 or shape[1] != 1:
            raise ConfigError(
                f"likelihood 'mixed' models table rows (csv:FILE), held as (2, 1, W); got data of shape "
                f"{tuple(shape)}: choose an image likelihood"
            )
        if gaussian_mean != "identity":
            raise ConfigError(
                f"likelihood 'mixed': a table's continuous columns are standardised, unbounded: "
                f"model.gaussian_mean must be identity, got {gaussian_mean}"
            )
        if gaussian_variance == "fixed" and gaussian_sigma**2 <= variance_floor:
            raise ConfigError(
                f"need gaussian_sigma^2 > variance_floor, got sigma {gaussian_sigma}, floor {variance_floor}"
            )
        width = shape[2]
        layout = table_layout(table) if table else None
        if layout is not None and len(layout.kinds) != width:
            raise ConfigError(
                f"likelihood 'mixed': model.table lays out {len(layout.kinds)} slots, the rows have {width}"
            )
        ready = layout is not None
        if layout is None:  # a run saved without model.table: filled by its checkpoint's weights
            layout = TableLayout((CONTINUOUS,) * width, tuple(range(width)), (0.0,) * width, (1.0,) * width)
        self.register_buffer("kind", torch.tensor(layout.kinds, dtype=torch.long))
        self.register_buffer("column", torch.tensor(layout.columns, dtype=torch.long))
        self.register_buffer("mean", torch.tensor(layout.mean, dtype=torch.float64))
        self.register_buffer("sd", torch.tensor(layout.sd, dtype=torch.float64))
        self.register_buffer("ready", torch.tensor(ready))
        self.mode = gaussian_variance
        self.floor = float(variance_floor)
        start = (gaussian_sigma**2 if gaussian_variance == "fixed" else 1.0) - self.floor
        raw = torch.full((width,), math.log(math.expm1(start)))
        if gaussian_variance == "fixed":
            self.register_buffer("raw", raw)
        else:
            self.raw = nn.Parameter(raw)
        self._slots: dict[torch.device, Slots] = {}

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._slots = {}  # the layout came with the weights

    def slots(self, device: torch.device) -> Slots:
        """The layout's index tensors on `device` (made once per device and layout)."""
        if not bool(self.ready):
            raise ConfigError(
                "likelihood 'mixed' models a table's rows: it needs their layout, model.table (training on "
                "--data csv:FILE writes it), or a checkpoint's weights"
            )
        if device not in self._slots:  # normal tensors even under inference_mode: AIS later takes gradients
            with torch.inference_mode(False), torch.no_grad():
                kind, column, sd = (t.to(device).clone() for t in (self.kind, self.column, self.sd))
                self._slots[device] = slots_of(kind, column, sd)
        return self._slots[device]

    def forward(self, out: torch.Tensor) -> Distribution:
        params = out[..., 0, 0, :]
        raw = self.raw if self.mode != "decoder" else out[..., 1, 0, :] + self.raw
        scale = (self.floor + F.softplus(raw)).sqrt().expand_as(params)
        s = self.slots(out.device)
        log_sd = s.log_sd.to(params.dtype)
        return MixedTable(params, scale, params, s._replace(log_sd=log_sd))
