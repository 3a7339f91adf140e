"""benchmarks/m1_codes.py's pieces (issue #19): the Gaussian log density, the weighted fit and the mixture
classifier's error against exact values."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import m1_codes as mc


def test_log_normal_is_scipys_log_density():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    cov, mean, x = a @ a.T + np.eye(3), rng.normal(size=3), rng.normal(size=(7, 3))
    np.testing.assert_allclose(mc.log_normal(x, mean, cov), multivariate_normal(mean, cov).logpdf(x))


def test_weighted_fit_is_the_weighted_moments_plus_the_ridge():
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(50, 2)), rng.uniform(size=50)
    mean, cov = mc.weighted_fit(x, w, reg=0.5)
    np.testing.assert_allclose(mean, np.average(x, axis=0, weights=w))
    np.testing.assert_allclose(cov, np.cov(x.T, aweights=w, bias=True) + 0.5 * np.eye(2))


def test_error_takes_each_class_by_the_sum_over_its_components():
    """Class 0 has two components at -5 and +5, class 1 one at 0: points at -5 and +5 are class 0, a point at 0
    class 1, and one at 4 (labelled 1) goes to class 0's component at +5."""
    eye = np.eye(1)
    comps = [(0, np.log(0.25), np.array([-5.0]), eye), (0, np.log(0.25), np.array([5.0]), eye)]
    comps.append((1, np.log(0.5), np.array([0.0]), eye))
    x, y = np.array([[-5.0], [5.0], [0.0], [4.0]]), np.array([0, 0, 1, 1])
    assert mc.error(comps, x, y) == pytest.approx(0.25)  # only the last (labelled 1, nearer +5) is wrong


def test_a_missing_run_is_one_line_and_a_non_zero_exit(tmp_path, capsys):
    assert mc.main([str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("m1_codes: error: ") and str(tmp_path / "nope") in err[0]
