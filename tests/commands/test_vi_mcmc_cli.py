"""`vaelab vi` and `vaelab mcmc` end to end on small settings: the files they write, summary.json against
the exact answer, the shared summary across the two commands, and one-line errors with exit code 1."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from vaelab import cli
from vaelab.inference import toy


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == before  # the commands put it back


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_vi_then_mcmc_write_their_files_and_agree_with_the_truth(tmp_path, capsys):
    out = tmp_path / "nn"
    code, stdout, _ = run(
        capsys, "vi", "--model", "normal-normal", "--family", "full", "--steps", "400", "--lr", "0.05",
        "--kl-every", "20", "--out", str(out),
    )  # fmt: skip
    assert code == 0
    for name in ("vi-full-reverse-posterior.png", "vi-full-reverse-elbo.png", "vi-full-reverse-trace.csv"):
        assert (out / name).stat().st_size > 1000
    assert f"outputs in {out}/:" in stdout and "summary.json" in stdout.splitlines()[-1]
    s = json.loads((out / "summary.json").read_text())
    m = toy.get_model("normal-normal")
    assert s["model"] == "normal-normal" and s["exact"]["log_evidence"] == m.exact.log_evidence
    v = s["vi"]["full-reverse"]
    assert v["kl_q_p_method"] == "closed form" and 0 <= v["kl_q_p"] < 0.02
    assert abs(v["elbo_plus_kl"] - v["log_evidence"]) < 4 * v["identity_tolerance"]
    sd = np.sqrt(np.diag(m.exact.cov))
    assert np.all(np.abs(np.array(v["mean"]) - m.exact.mean) < 0.1 * sd)
    gv = v["gradient_variance"]
    assert gv["reparam"]["total_variance"] > 0 and gv["score"]["total_variance"] > 0
    rows = (out / "vi-full-reverse-trace.csv").read_text().splitlines()
    assert rows[0].startswith("step,elbo,") and len(rows) == 401

    code, stdout, _ = run(
        capsys, "mcmc", "--model", "normal-normal", "--sampler", "hmc", "--draws", "400", "--warmup", "150",
        "--leapfrog", "5", "--out", str(out),
    )  # fmt: skip
    assert code == 0
    for name in ("mcmc-hmc-samples.png", "mcmc-hmc-trace.png", "mcmc-hmc-error.png"):
        assert (out / name).stat().st_size > 1000
    assert np.load(out / "mcmc-hmc-draws.npy").shape == (4, 400, 2)
    s = json.loads((out / "summary.json").read_text())
    h = s["mcmc"]["hmc"]
    assert h["within_4_mcse"] and max(h["rhat"]) < 1.05 and 0.5 < h["acceptance"] < 0.95
    assert "full-reverse" in s["vi"]  # the vi result in the same folder is kept
    assert set(s["comparison"]["mean"]) == {"exact", "vi full-reverse", "mcmc hmc"}


def test_vi_both_divergences_side_by_side(tmp_path, capsys):
    code, _, _ = run(
        capsys, "vi", "--model", "bimodal-1d", "--family", "full", "--divergence", "both", "--steps", "300",
        "--lr", "0.05", "--kl-every", "50", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0 and (tmp_path / "vi-full-both-posterior.png").exists()
    s = json.loads((tmp_path / "summary.json").read_text())
    fwd, rev = s["vi"]["full-forward"], s["vi"]["full-reverse"]
    exact_sd = s["exact"]["sd"][0]
    assert abs(np.sqrt(fwd["cov"][0][0]) / exact_sd - 1) < 0.02  # moment matching covers both modes
    assert fwd["kl_p_q"] < rev["kl_p_q"] and rev["kl_q_p"] < fwd["kl_q_p"]  # each wins its own KL


def test_list_shows_models_families_and_samplers(capsys):
    code, out, _ = run(capsys, "vi", "--list")
    assert code == 0
    for name in (*toy.MODELS, "diagonal", "full", "mixture", "flow", "reverse", "forward", "mh", "hmc"):
        assert name in out


def test_help_shows_defaults(capsys):
    for command, default in (("vi", "default: 2000"), ("mcmc", "default: hmc")):
        with pytest.raises(SystemExit) as e:
            cli.main([command, "--help"])
        assert e.value.code == 0 and default in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["vi", "--model", "gaussian"], "unknown model 'gaussian'; choose from: normal-normal, bimodal-1d"),
        (["vi", "--model", "banana", "--family", "gmm"], "unknown family 'gmm'; choose from: diagonal, full"),
        (["vi", "--model", "banana", "--divergence", "alpha"], "choose from: reverse, forward, both"),
        (
            ["vi", "--model", "banana", "--estimator", "vimco"],
            "unknown estimator 'vimco'; choose from: reparam",
        ),
        (["vi", "--model", "banana", "--steps", "0"], "steps must be at least 1, got 0"),
        (["vi", "--family", "full"], "--model is required; choose from: normal-normal"),
        (
            ["mcmc", "--model", "banana", "--sampler", "gibbs"],
            "unknown sampler 'gibbs'; choose from: mh, hmc",
        ),
        (["mcmc", "--model", "banana", "--draws", "0"], "draws must be at least 4 (R-hat and ESS split each"),
        (["mcmc", "--model", "banana", "--draws", "3"], "halves of 2), got 3"),  # ArviZ's diagnostics: nan
        (
            ["mcmc", "--model", "banana", "--init", "1,2,3"],
            "--init needs 2 numbers for model 'banana', got 3",
        ),
        (
            ["mcmc", "--model", "banana", "--init", "1e200,0"],
            "log density is -inf at z=[1e+200, 0] (chain 0, step 0)",
        ),
        (["mcmc", "--model", "banana", "--warmup", "-1"], "warmup must be 0 or more, got -1"),
        (
            ["mcmc", "--model", "banana", "--target-accept", "1.5"],
            "target acceptance must be between 0 and 1, got 1.5",
        ),
        (
            ["mcmc", "--model", "banana", "--sampler", "hmc", "--leapfrog", "0"],
            "leapfrog steps must be at least 1, got 0",
        ),
        (["vi", "--model", "banana", "--samples", "0"], "samples per step must be at least 1, got 0"),
        (["vi", "--model", "banana", "--lr", "0"], "learning rate must be a positive number, got 0.0"),
        (
            ["vi", "--model", "banana", "--family", "mixture", "--components", "0"],
            "a mixture needs at least 1 component, got 0",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_1(argv, message, tmp_path, capsys):
    code, _, err = run(capsys, *argv, "--out", str(tmp_path / "x"))
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"vaelab {argv[0]}: error: ")
    assert message in err
    assert not (tmp_path / "x").exists()  # a refused run leaves no folder behind


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["--chains", "1", "--draws", "50"],
            "  note: R-hat compares chains: run 2 or more (--chains) to have it",
        ),
        (
            ["--sampler", "mh", "--step-size", "100", "--no-adapt"],
            "  warning: acceptance 2.5e-47: the chains barely moved; a smaller --step-size, or let the warm-up "
            "adapt it (without --no-adapt)",
        ),
    ],
)
def test_diagnostics_that_cannot_be_had_are_said_in_vaelab_words_not_arviz_warnings(
    argv, line, tmp_path, capsys
):
    """One chain: ArviZ logged "Shape validation failed"; chains that never moved: numpy's divide-by-zero warning
    (R-hat inf) under a line blaming disagreeing chains."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning that reached the user fails here
        code, out, err = run(
            capsys,
            "mcmc",
            "--model",
            "banana",
            "--warmup",
            "5",
            "--draws",
            "10",
            *argv,
            "--quiet",
            "--out",
            str(tmp_path / "x"),
        )
    assert code == 0 and err == "", err
    assert line in out.splitlines()
    assert "Shape validation" not in out and "disagree" not in out


@pytest.mark.parametrize(
    ("family", "lr", "message"),
    [
        ("full", "1e30", "q is no longer a valid distribution (ValueError) at step 1: the full q diverged"),
        ("full", "5", "at step 11: the full q diverged; try a smaller --lr"),
        ("diagonal", "50", "the diagonal q diverged; try a smaller --lr"),
        ("flow", "50", "the flow q diverged; try a smaller --lr"),
    ],
)
@pytest.mark.parametrize("existing", [False, True], ids=["new-out", "existing-out"])
def test_diverging_fit_is_one_line_and_writes_nothing(family, lr, message, existing, tmp_path, capsys):
    """A learning rate that makes q run away: one line naming the step, the family and the remedy, exit code 1,
    and no file in --out (no trace CSV of the fits that did finish, no figure, no summary.json)."""
    out = tmp_path / "x"
    if existing:
        out.mkdir()
    argv = ["vi", "--model", "banana", "--family", family, "--steps", "100", "--lr", lr, "--quiet"]
    code, _, err = run(capsys, *argv, "--out", str(out))
    assert code == 1, err
    assert err.count("\n") == 1 and err.startswith("vaelab vi: error: "), err
    assert message in err
    assert (list(out.iterdir()) == []) if existing else not out.exists()


@pytest.mark.parametrize(
    "content",
    [
        b"[1, 2]",  # JSON, but not an object
        b'{"model": "banana", "vi": [1], "mcmc": "x"}',  # sections of another shape
        b'{"model": "banana", "vi": {"full-reverse": {"mean": "a"}}, "mcmc": {"hmc": {"mean": [0, 0]}}}',
        b"\xff\xfe",  # not text
    ],
)
@pytest.mark.parametrize("command", ["vi", "mcmc"])
def test_a_summary_json_vaelab_cannot_read_is_replaced_not_a_traceback(content, command, tmp_path, capsys):
    """summary.json in --out is shared by vi and mcmc: one that is not an object, or whose entries lack their
    moments, is replaced (dropping those entries), as an unreadable one is; it was an AttributeError,
    TypeError or KeyError traceback after the figures had been written."""
    (tmp_path / "summary.json").write_bytes(content)
    argv = ["--steps", "5"] if command == "vi" else ["--draws", "5", "--warmup", "5"]
    code, _, err = run(capsys, command, "--model", "banana", *argv, "--quiet", "--out", str(tmp_path))
    assert code == 0 and err == "", err
    s = json.loads((tmp_path / "summary.json").read_text())
    entry = "vi full-reverse" if command == "vi" else "mcmc hmc"
    assert s["model"] == "banana" and set(s["comparison"]["mean"]) == {"exact", entry}
