"""What an evaluation is asked to do: one frozen `EvalSettings`, validated once, from which `vaelab.evaluate`'s
keywords and `vaelab eval`'s flags are both made.

Each field carries its command-line flag, metavar and help text in its metadata (`Flag`), so the list of
settings is spelled in one place: `vaelab.commands.eval` builds its parser from `flags()`, and
`evaluate(run, importance=..., ais=...)` builds an `EvalSettings` from its keywords. A bad value is one
ConfigError naming the flag and the value, raised when the settings are made, before any work.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, get_args, get_type_hints

from vaelab.errors import ConfigError

# The built-in names, for the flags' help without importing torch (`vaelab eval --help` answers at once);
# values are checked against the real tables (vaelab.inference.ais.SCHEDULES, vaelab.data.SPLIT_SEED_OFFSET),
# and tests/evaluate/test_settings.py checks these lists equal them.
SCHEDULE_NAMES = ("sigmoid", "geometric", "linear")
SPLIT_NAMES = ("test", "valid", "train")


@dataclass(frozen=True)
class Flag:
    """How a setting appears on the command line.

    Args:
        flag: the option, e.g. "--importance".
        help: its help text.
        metavar: the placeholder shown in help (argparse's metavar).
        shared: the flag is one of the shared run options (`vaelab.commands.common.add_run_options`), added
            there rather than from this table.
        negated: the flag is a store_true switch that turns the setting off (`--quiet` for `progress`).
        choices: the values argparse accepts.
    """

    flag: str
    help: str
    metavar: str | None = None
    shared: bool = False
    negated: bool = False
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        """The argparse attribute the flag is stored under ("--data-dir" -> "data_dir")."""
        return self.flag.lstrip("-").replace("-", "_")


def _setting(default: Any, flag: Flag | None = None) -> Any:
    return field(default=default, metadata={"flag": flag} if flag else {})


QUALITY_HELP = (
    "Fréchet distance, precision and recall of N samples vs N images, on the features of a classifier "
    "vaelab trains on the data set (not Inception: its weights cannot be downloaded here; 0: none)"
)


@dataclass(frozen=True)
class EvalSettings:
    """Every setting of an evaluation, checked when made (each bad value is one ConfigError naming its flag).

    Args:
        importance: K, importance samples per image (>= 1).
        ais: T, AIS intermediate distributions (0: no AIS; otherwise >= 2).
        chains: C, AIS chains per image (>= 1).
        leapfrog: L, leapfrog steps per HMC transition (>= 1).
        schedule: the AIS schedule, one of `vaelab.inference.ais.SCHEDULES`.
        bdmc: BDMC on this many simulated images (0: none), with T = `ais`, or 500.
        decomposition: take the ELBO apart (its parts, gap, active units, I(x; z)).
        quality: N, sample quality of N samples against N images (0: none).
        split: the split to evaluate (test, valid or train).
        limit: only the first `limit` images (None: all).
        seed: the seed of every estimator's draws (per block of images).
        device: cpu, cuda, cuda:N or auto.
        data_dir: where the run's data set lives, if not where it was (None: where it was).
        which: which checkpoint of a run folder, best or last.
        progress: draw progress bars (rank 0 alone).
        dist_timeout: seconds allowed for the rendezvous and each collective of a process group.
    """

    importance: int = _setting(1000, Flag("--importance", "importance samples per image", "K"))
    ais: int = _setting(0, Flag("--ais", "AIS intermediate distributions (0: no AIS)", "T"))
    chains: int = _setting(16, Flag("--chains", "AIS chains per image", "C"))
    leapfrog: int = _setting(10, Flag("--leapfrog", "leapfrog steps per HMC transition", "L"))
    schedule: str = _setting("sigmoid", Flag("--schedule", f"AIS schedule: {' | '.join(SCHEDULE_NAMES)}"))
    bdmc: int = _setting(0, Flag("--bdmc", "BDMC on N simulated images (0: none)", "N"))
    decomposition: bool = _setting(
        False, Flag("--decomposition", "the ELBO's parts, gap, active units, I(x; z)")
    )
    quality: int = _setting(0, Flag("--quality", QUALITY_HELP, "N"))
    split: str = _setting("test", Flag("--split", "test | valid | train"))
    limit: int | None = _setting(None, Flag("--limit", "only the first N images", "N"))
    seed: int = _setting(0, Flag("--seed", "seed of every estimator's draws (per block of images)"))
    device: str = _setting("cpu", Flag("--device", "cpu, cuda, cuda:N or auto", shared=True))
    data_dir: str | None = _setting(
        None, Flag("--data-dir", "where the run's data set lives, if not where it was", shared=True)
    )
    which: str = _setting(
        "best",
        Flag("--checkpoint", "which checkpoint of the run", shared=True, choices=("best", "last")),
    )
    progress: bool = _setting(False, Flag("--quiet", "no progress bars", negated=True))
    dist_timeout: float = 1800.0

    def __post_init__(self) -> None:
        for name in ("importance", "ais", "chains", "leapfrog", "bdmc", "quality", "seed", "limit"):
            self._integer(name)
        if not isinstance(self.dist_timeout, numbers.Real) or not 0 < self.dist_timeout < math.inf:
            raise ConfigError(f"dist_timeout must be a positive number of seconds, got {self.dist_timeout!r}")
        if self.importance < 1:
            raise ConfigError(f"--importance K must be >= 1, got {self.importance}")
        if self.ais != 0 and self.ais < 2:
            raise ConfigError(f"--ais T must be >= 2 intermediate distributions, got {self.ais}")
        if self.chains < 1:
            raise ConfigError(f"--chains C must be >= 1, got {self.chains}")
        if self.leapfrog < 1:
            raise ConfigError(f"--leapfrog L must be >= 1, got {self.leapfrog}")
        if self.bdmc < 0:
            raise ConfigError(f"--bdmc N must be >= 0, got {self.bdmc}")
        from vaelab.data import SPLIT_SEED_OFFSET
        from vaelab.inference.ais import SCHEDULES

        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown AIS schedule '{self.schedule}'; choose one of: {', '.join(SCHEDULES)}"
            )
        if self.quality < 0:
            raise ConfigError(f"--quality N must be >= 0, got {self.quality}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.limit}")
        if self.split not in SPLIT_SEED_OFFSET:
            raise ConfigError(f"unknown split '{self.split}'; choose one of: {', '.join(SPLIT_SEED_OFFSET)}")
        if self.which not in ("best", "last"):
            raise ConfigError(f"--checkpoint must be best or last, got {self.which!r}")

    def _integer(self, name: str) -> None:
        """An integral value (numpy's too) stored as an int; None is left for --limit alone."""
        value = vars(self)[name]
        if value is None and name == "limit":
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            flag = _flag_of(name)
            raise ConfigError(f"{flag} must be an integer, got {value!r}")
        object.__setattr__(self, name, int(value))

    @property
    def bdmc_steps(self) -> int:
        """T of BDMC: the AIS setting, or 500 when AIS is off."""
        return self.ais or 500

    def replace(self, **changes: Any) -> EvalSettings:
        """A copy with some settings changed (validated again).

        Args:
            **changes: setting name -> new value; an unknown name is a TypeError, as for a function.
        """
        known = [f.name for f in fields(self)]
        for name in changes:
            if name not in known:
                raise TypeError(f"unknown evaluation setting '{name}'; the settings are: {', '.join(known)}")
        return dataclasses.replace(self, **changes)


def flags() -> Iterator[tuple[str, Any, Flag, type]]:
    """(setting name, default, Flag, value type) of every setting that has a command-line flag, in order."""
    hints = get_type_hints(EvalSettings)
    for f in fields(EvalSettings):
        flag = f.metadata.get("flag")
        if flag is not None:
            kinds = [t for t in get_args(hints[f.name]) if t is not type(None)] or [hints[f.name]]
            yield f.name, f.default, flag, kinds[0]


def _flag_of(name: str) -> str:
    for setting, _, flag, _ in flags():
        if setting == name:
            return flag.flag
    return name
