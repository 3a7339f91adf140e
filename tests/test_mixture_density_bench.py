"""benchmarks/mixture_density.py: its error figures tell the plain float32 expansion (wrong at collapsed
components) from vaelab's (within its tolerance in both states), and bad sizes are one-line exits."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import mixture_density as md
from vaelab.distributions import priors


def test_errors_separate_the_plain_expansion_from_vaelabs():
    figures = md.measure(points=60, components=50, dim=40, reps=1)
    for kind in ("healthy", "collapsed"):
        assert figures[kind]["vaelab"]["max_abs_error_nats"] <= priors.MIXTURE_TOLERANCE
        assert figures[kind]["float64"]["max_abs_error_nats"] <= priors.MIXTURE_TOLERANCE
    assert figures["healthy"]["float32"]["max_abs_error_nats"] <= priors.MIXTURE_TOLERANCE
    assert figures["collapsed"]["float32"]["max_abs_error_nats"] > 1e3  # the cancellation the fix is for


def test_collapsed_state_has_all_but_three_components_at_the_floor():
    locs, scales, z = md.state("collapsed", points=20, components=10, dim=4)
    assert locs.shape == (10, 4) and z.shape == (20, 4)
    assert (scales[3:] == 1e-5).all() and (scales[:3] >= 0.5).all()


@pytest.mark.parametrize("flag", ["--reps", "--points", "--threads"])
def test_sizes_below_one_are_refused(flag, capsys):
    with pytest.raises(SystemExit) as e:
        md.main([flag, "0", "--no-save"])
    assert e.value.code == 2 and f"{flag} must be at least 1" in capsys.readouterr().err


def test_negative_steps_are_refused(capsys):
    with pytest.raises(SystemExit) as e:
        md.main(["--steps", "-1", "--no-save"])
    assert e.value.code == 2 and "--steps must be 0 (off) or more" in capsys.readouterr().err
