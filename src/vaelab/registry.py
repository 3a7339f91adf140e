"""One kind of table for every name a user can choose (models, objectives, estimators, bodies, likelihoods,
schedules, ...), in the spirit of `torch.distributions.kl.register_kl`: entries register where they are
defined, and each table checks its own names with the same one-line error.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from vaelab.errors import ConfigError

T = TypeVar("T")


class Registry(dict[str, T]):
    """A named table of choices: a dict (iterate, `in`, `[]` as usual) that registers and validates names.

    Args:
        what: what a name picks, for errors ("model", "objective", "AIS schedule").
        entries: initial name -> value pairs.
        more: choices outside the table shown in the error (e.g. "folder:PATH").
    """

    def __init__(self, what: str, entries: Iterable[tuple[str, T]] | dict[str, T] = (), *, more: str = ""):
        super().__init__(entries)
        self.what, self.more = what, more

    def register(self, name: str, value: T | None = None, *, replace: bool = False) -> Any:
        """Add `value` under `name`; without `value`, a decorator that adds what it decorates.

        Args:
            name: the name users choose it by.
            value: the entry; omitted, `register(name)` decorates a function or class.
            replace: allow replacing an existing entry (otherwise a ConfigError).
        """
        if not isinstance(name, str) or not name or name != name.strip():
            raise ConfigError(
                f"a {self.what} name must be a non-empty string without spaces around it, got {name!r}"
            )

        def add(entry: T) -> T:
            if name in self and not replace and self[name] is not entry:
                raise ConfigError(
                    f"{self.what} '{name}' is already registered; pass replace=True to replace it"
                )
            self[name] = entry
            return entry

        return add if value is None else add(value)

    def check(self, name: str) -> None:
        """A ConfigError naming the choices when `name` is not in the table."""
        if name not in self:
            choices = ", ".join(self) + (f", {self.more}" if self.more else "")
            raise ConfigError(f"unknown {self.what} '{name}'; choose one of: {choices}")

    def lookup(self, name: str) -> T:
        """The entry registered under `name`; a ConfigError naming the choices otherwise."""
        self.check(name)
        return self[name]
