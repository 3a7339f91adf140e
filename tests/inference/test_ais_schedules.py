"""The AIS schedules table: the same names and message as before, and each schedule's closed form."""

from __future__ import annotations

import pytest
import torch

from vaelab.errors import ConfigError
from vaelab.inference.ais import SCHEDULES, schedule


def test_the_names_and_the_error():
    assert list(SCHEDULES) == ["sigmoid", "geometric", "linear"]
    with pytest.raises(
        ConfigError, match=r"^unknown AIS schedule 'cubic'; choose one of: sigmoid, geometric, linear$"
    ):
        schedule(10, "cubic")


def test_each_schedule_is_its_closed_form():
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    torch.testing.assert_close(schedule(4, "linear"), t)
    s = torch.sigmoid(3.0 * (2 * t - 1))
    torch.testing.assert_close(schedule(4, "sigmoid", delta=3.0), (s - s[0]) / (s[-1] - s[0]))
    geometric = torch.tensor([0.0, 1e-3, 1e-2, 1e-1, 1.0], dtype=torch.float64)
    torch.testing.assert_close(schedule(4, "geometric", start=1e-3), geometric)
    for kind in SCHEDULES:
        b = schedule(7, kind)
        assert b.dtype == torch.float64 and b[0] == 0.0 and b[-1] == 1.0 and bool((b.diff() > 0).all())


def test_a_registered_schedule_is_used_by_name():
    try:
        SCHEDULES.register(
            "square", lambda steps, delta, start: torch.linspace(0, 1, steps + 1).double() ** 2
        )
        torch.testing.assert_close(schedule(2, "square"), torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64))
    finally:
        SCHEDULES.pop("square", None)
    assert list(SCHEDULES) == ["sigmoid", "geometric", "linear"]
