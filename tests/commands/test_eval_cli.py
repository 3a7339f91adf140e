"""`vaelab eval`: eval.json's contents, the printed table, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vaelab.cli import main
from vaelab.commands.common import open_run
from vaelab.evaluate.decomposition import ACTIVE_THRESHOLD
from vaelab.train import read_checkpoint, save_checkpoint, train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from vaelab_testing import small_config

    root = tmp_path_factory.mktemp("eval")
    train(small_config(**{"train.epochs": 2}), out=root / "vae")
    train(small_config(**{"train.epochs": 1, "model.name": "autoencoder"}), out=root / "ae")
    return root


def test_eval_writes_every_part(runs, capsys):
    """eval.json holds every estimator asked for, consistent with itself: NLL and bits/dim from log p(x), the
    BDMC bounds in order with their gap, the decomposition's parts and its active units recomputed."""
    code = main(
        [
            "eval",
            str(runs / "vae"),
            "--importance",
            "64",
            "--ais",
            "10",
            "--chains",
            "2",
            "--leapfrog",
            "2",
            "--bdmc",
            "4",
            "--decomposition",
            "--limit",
            "30",
            "--seed",
            "3",
            "--quiet",
        ]
    )
    assert code == 0
    r = json.loads((runs / "vae" / "eval.json").read_text())
    assert r["num_images"] == 30 and r["seed"] == 3 and r["split"] == "test" and r["data"] == "digits"
    assert {"estimate", "stderr"} <= set(r["elbo"])
    assert {"num_samples", "log_px", "stderr", "nll", "bits_per_dim"} <= set(r["importance"])
    assert r["importance"]["num_samples"] == 64 and r["importance"]["nll"] == -r["importance"]["log_px"]
    assert r["importance"]["bits_per_dim"] == pytest.approx(
        r["importance"]["nll"] / (64 * 0.6931471805599453)
    )
    assert r["elbo"]["estimate"] <= r["importance"]["log_px"]
    assert r["ais"]["steps"] == 10 and r["ais"]["chains"] == 2 and r["ais"]["num_images"] == 30
    b = r["bdmc"]
    assert b["num_data"] == 4
    # E[lower] <= log p(x) <= E[upper]: the means are ordered up to 3 s.e. of their mean difference, the gap
    assert b["gap"] == pytest.approx(b["upper"] - b["lower"], rel=1e-9)
    assert b["lower"] <= b["upper"] + 3 * b["gap_stderr"]
    d = r["decomposition"]
    assert d["elbo"] == pytest.approx(d["rec"] - d["kl"]) and "gap" in d
    # the Gaussian KL splits over dimensions: its per-dimension means add up to the KL
    assert sum(d["kl_per_dim"]) == pytest.approx(d["kl"], rel=1e-5) and len(d["kl_per_dim"]) == 2
    # active units (Burda et al. 2016): dimensions whose posterior mean varies over the images by more than
    # the threshold, Var_x E_q[z_d], recomputed here on the 30 images evaluated
    o = open_run(str(runs / "vae"))
    with torch.inference_mode():
        means = o.model.encode(o.split("test").batch(slice(0, 30))).mean.double()
    variances = means.var(0)
    np.testing.assert_allclose(d["posterior_mean_variance_per_dim"], variances.numpy(), rtol=1e-5)
    assert d["active_units"] == int((variances > ACTIVE_THRESHOLD).sum())
    out = capsys.readouterr().out
    for text in (
        "ELBO",
        "IS (IWAE bound)",
        "AIS",
        "BDMC",
        "decomposition",
        "bits/dim",
        "seed 3",
        f"wrote {runs / 'vae' / 'eval.json'}",
    ):
        assert text in out


def test_same_seed_same_numbers(runs, tmp_path):
    for name in ("a", "b"):
        assert (
            main(
                [
                    "eval",
                    str(runs / "vae"),
                    "--importance",
                    "16",
                    "--limit",
                    "20",
                    "--quiet",
                    "--out",
                    str(tmp_path / f"{name}.json"),
                ]
            )
            == 0
        )
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["importance"]["log_px"] == b["importance"]["log_px"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--importance", "0"], "--importance K must be >= 1, got 0"),
        (["--ais", "1"], "--ais T must be >= 2"),
        (["--ais", "5", "--chains", "0"], "--chains C must be >= 1, got 0"),
        (["--schedule", "cubic"], "unknown AIS schedule 'cubic'"),
        (["--split", "holdout"], "unknown split 'holdout'"),
        (["--limit", "0"], "--limit must be >= 1"),
    ],
)
def test_bad_settings(runs, capsys, one_line_error, extra, needle):
    one_line_error(capsys, main(["eval", str(runs / "vae"), "--quiet", *extra]), needle)


def test_models_estimators_do_not_apply_to(runs, capsys, one_line_error):
    one_line_error(
        capsys,
        main(["eval", str(runs / "ae"), "--quiet"]),
        "importance sampling does not apply to Autoencoder",
    )


def test_missing_checkpoint_and_wrong_shape(runs, tmp_path, capsys, one_line_error):
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, main(["eval", str(tmp_path / "empty"), "--quiet"]), "no checkpoint in")
    ck = read_checkpoint(runs / "vae" / "checkpoints" / "last.pt")
    ck["config"]["data"]["name"] = "mnist-5k"
    save_checkpoint(tmp_path / "moved.pt", ck)
    one_line_error(
        capsys,
        main(["eval", str(tmp_path / "moved.pt"), "--quiet"]),
        "mnist-5k images are (1, 28, 28), the model was built for (1, 8, 8)",
    )


def test_the_printed_table_is_made_from_the_estimates():
    """A row per estimate of log p(x) (its registration's label and settings column, bits/dim from the image
    size), then each estimator's lines."""
    from vaelab.commands.eval import format_table
    from vaelab.evaluate import Estimate, Evaluation

    psis = {"k_hat_mean": 0.25, "k_hat_max": 0.75, "share_above_threshold": 0.25}
    ev = Evaluation(
        {"split": "test", "seed": 0},
        {
            "exact": Estimate("exact", "m", log_px=-10.0, stderr=0.5, n=4, seconds=1.0),
            "psis": Estimate("psis", "m", n=4, extras=psis),
        },
        dims=64,
        seconds=2.0,
    )
    assert format_table(ev).splitlines() == [
        "model: ? test split, 4 images, seed 0",
        "estimate                 log p(x)   stderr        NLL bits/dim   settings (nats per image)",
        "exact (chain rule)         -10.00     0.50      10.00   0.2254   no sampling",
        "PSIS k-hat of the IS weights (Vehtari et al.): mean 0.25, max 0.75; 25.0% of 4 images above 0.7 "
        "(their IS log p(x) is not to be trusted)",
        "time 2.0 s",
    ]
