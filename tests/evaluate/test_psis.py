"""The PSIS k-hat estimator: k-hat against the known tail of Gaussian importance weights, exactly ArviZ's fit
of the same weights, and its block in eval.json."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from gaussian_weights import GaussianWeights, blank_split, true_k

from vaelab.cli import main
from vaelab.evaluate import evaluate
from vaelab.evaluate.loglik import importance_sampling
from vaelab.evaluate.psis import MIN_SAMPLES, THRESHOLD, ParetoTail, good_k, pareto_k, summarize
from vaelab.train import train


@functools.cache  # the same draws serve two tests
def k_hats(s_q: float, s_p: float, num_samples: int = 20000, n: int = 64, seed: int = 0) -> torch.Tensor:
    x = torch.zeros(n, 1, 1, 1)
    res = importance_sampling(
        GaussianWeights(s_q, s_p), x, num_samples, seed=seed, reductions={"psis": ParetoTail}
    )
    return res.reduced["psis"]


@pytest.mark.parametrize(("s_q", "s_p"), [(1.0, 2**0.5), (1.0, 2.0)])
def test_k_hat_finds_the_known_tail_of_gaussian_weights(s_q, s_p):
    """A proposal N(0, s_q^2) narrower than the target N(0, s_p^2) gives weights with k = 1 - s_q^2/s_p^2
    (0.5: the variance is just infinite; 0.75: beyond PSIS's 0.7).

    Tolerance, measured with K = 20000 and 64 images over seeds 0-9: the per-image k-hat has sd 0.07
    (k = 0.5) and 0.08 (k = 0.75); the mean over 64 images has sd 0.010 and 0.012 across seeds, and sits
    0.030 and 0.061 below k (the Gaussian weights are Pareto only up to a slowly varying factor
    1/sqrt(log w), which a finite K sees as a lighter tail). So the mean lands within bias + 4 sd < 0.11 of
    k, and every image within 5 per-image sd (0.4)."""
    k = true_k(s_q, s_p)
    got = k_hats(s_q, s_p)
    assert abs(float(got.mean()) - k) < 0.11
    assert float((got - k).abs().max()) < 0.4
    assert float(got.mean()) < k  # the direction of the slowly varying factor's bias


def test_k_hat_orders_the_tails_and_a_wide_proposal_is_below_one_half():
    """A heavier tail (k = 0.75) gets a larger k-hat than k = 0.5 on the same draws; a proposal wider than
    the target bounds the weights (k < 0) and every image's k-hat stays below 0.5 (measured: at most -1.25)."""
    light, heavy = k_hats(1.0, 2**0.5), k_hats(1.0, 2.0)
    assert float(heavy.mean()) > float(light.mean()) + 0.15
    wide = k_hats(2.0, 1.0)
    assert float(wide.max()) < 0.5 and true_k(2.0, 1.0) < 0


def test_the_stream_gives_exactly_arviz_psislw_of_the_same_weights():
    """The reduction keeps each block's weights as they stream by: its k-hats are ArviZ's own on the whole
    [N, K] weights (here drawn again from the same generator), bit for bit."""
    from arviz import psislw

    model, x = GaussianWeights(1.0, 1.6), torch.zeros(10, 1, 1, 1)
    res = importance_sampling(
        model,
        x,
        300,
        torch.Generator().manual_seed(4),
        batch_size=3,
        chunk=70,
        reductions={"psis": ParetoTail},
    )
    g = torch.Generator().manual_seed(4)
    rows = []
    for start in range(0, 10, 3):
        b = min(3, 10 - start)
        chunks = [model.log_importance_weights(x[:b], c, g) for c in (70, 70, 70, 70, 20)]
        rows.append(torch.cat(chunks).T)
    _, want = psislw(torch.cat(rows).numpy(), reff=1.0)
    np.testing.assert_array_equal(res.reduced["psis"].numpy(), want)


def test_arviz_fits_a_tail_from_21_weights():
    """ArviZ fits the ceil(min(K/5, 3 sqrt(K))) largest weights and needs more than 4: K = 21 is the least."""
    lw = torch.randn(5, 21, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert np.isfinite(pareto_k(lw)).all() and MIN_SAMPLES == 21
    assert np.isinf(pareto_k(lw[:, :20])).all()


def test_summary_counts_partition_the_images_and_shares_are_exact():
    k = torch.tensor([0.1, 0.5, 0.6, 0.7, 0.71, 1.0, 1.3, float("inf")], dtype=torch.float64)
    s = summarize(k, 1000)
    assert s["counts"] == {"good": 2, "ok": 2, "bad": 2, "very_bad": 2}
    assert s["images_above_threshold"] == 4 and s["share_above_threshold"] == 0.5
    assert s["k_hat_mean"] == pytest.approx(float(k[:-1].mean())) and s["k_hat_max"] == float("inf")
    assert s["not_fitted"] == 1
    assert s["good_k"] == pytest.approx(1 - 1 / 3) and s["share_above_good_k"] == 5 / 8
    assert good_k(10**6) == THRESHOLD


def test_evaluate_reports_psis_with_importance_sampling_only_when_k_is_enough():
    """The psis block of evaluate(model, data) is the summary of its per-image k-hats; below 21 weights an
    image has no tail to fit and there is no block."""
    r = evaluate(GaussianWeights(1.0, 2.0), blank_split(12), importance=500, seed=2)
    p = r["psis"]
    assert p["num_samples"] == 500 and p["threshold"] == THRESHOLD and p["num_images"] == 12
    per = torch.tensor(p["per_datum"], dtype=torch.float64)
    assert p == {**p, **summarize(per, 500)}
    assert "psis" not in evaluate(GaussianWeights(1.0, 2.0), blank_split(4), importance=20)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    from vaelab_testing import small_config

    root = tmp_path_factory.mktemp("psis")
    train(small_config(**{"train.epochs": 1}), out=root / "vae")
    return root / "vae"


def test_eval_json_of_a_tiny_run_holds_the_psis_block(vae_run, capsys):
    assert main(["eval", str(vae_run), "--importance", "50", "--limit", "30", "--seed", "1", "--quiet"]) == 0
    r = json.loads((vae_run / "eval.json").read_text())
    p = r["psis"]
    assert 0 <= p["share_above_threshold"] <= 1 and len(p["per_datum"]) == 30 == p["num_images"]
    above = [k is None or k > THRESHOLD for k in p["per_datum"]]  # JSON writes ArviZ's k = inf as null
    assert p["share_above_threshold"] == sum(above) / len(above)
    assert p["images_above_threshold"] == sum(above) and sum(p["counts"].values()) == 30
    out = capsys.readouterr().out
    assert f"{100 * p['share_above_threshold']:.1f}% of 30 images above 0.7" in out
    from vaelab.viz.evalcharts import estimator_table

    row = f"{100 * p['share_above_threshold']:.1f}% of images above 0.7</td><td>k̂ mean {p['k_hat_mean']:.2f}"
    assert row in estimator_table(r, 64)
