"""benchmarks/speedrun.py: the records' configs obey their rules, the time marks and targets, and a quick record
on mnist-5k (offline): its scored number is vaelab eval's on best.pt, its clock is monotone, a re-run retrains
nothing, and every record stays in the table."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import speedrun
from vaelab.train.validate import validate_config


def test_marks_double_up_to_the_budget():
    assert speedrun.marks(960.0, 5) == [60.0, 120.0, 240.0, 480.0, 960.0]
    assert speedrun.marks(10.0, 1) == [10.0]


def test_a_target_is_met_at_or_under_it_and_a_strict_one_only_under_it():
    r = speedrun.RECORDS["mnist-1layer-15min"]
    assert speedrun.reached(r, 86.76) and not speedrun.reached(r, 86.77)
    moon = speedrun.RECORDS["mnist-any-8h"]
    assert moon.strict and not speedrun.reached(moon, 80.0) and speedrun.reached(moon, 79.99)


@pytest.mark.parametrize("name", list(speedrun.RECORDS))
def test_each_records_config_is_valid_and_obeys_the_records_rule(name):
    """One command away: the shipped config builds and validates; it trains what the record's rule says, on a
    validation split (best.pt is chosen on it, never on the test set)."""
    rec = speedrun.RECORDS[name]
    a = argparse.Namespace(data_dir="/nowhere", threads=1, seed=0, device="cpu", quick=False, set=[])
    cfg = speedrun.config_for(rec, a)
    validate_config(cfg)
    assert cfg.data.valid_fraction > 0 and cfg.data.binarize == "dynamic"
    assert cfg.data.name == ("fashion-mnist" if name.startswith("fashion") else "mnist")
    if "1layer" in name:
        assert cfg.model.name == "vae" and cfg.model.posterior == "gaussian"  # one layer, N(0, I) prior
    if "2layer" in name:
        assert cfg.model.name == "hierarchical"
    if name.startswith("fashion"):
        assert cfg.model.name == "vampprior"


def test_an_unknown_record_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        speedrun.main(["mnist-1layer-1min"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unknown record 'mnist-1layer-1min'" in err and "mnist-1layer-15min" in err


def test_a_quick_record_scores_best_pt_on_its_clock_and_a_rerun_retrains_nothing(tmp_path, capsys):
    torch.set_num_threads(1)
    results = tmp_path / "speedrun.json"
    argv = ["mnist-1layer-15min", "--quick", "--threads", "1", "--eval-threads", "1", "--set",
            "data.name=mnist-5k", "--budget-minutes", "30", "--runs-dir", str(tmp_path / "runs"), "--results", str(results)]  # fmt: skip
    assert speedrun.main(argv) == 0
    run = tmp_path / "runs" / "mnist-1layer-15min-quick"
    state = json.loads((run / speedrun.STATE).read_text())
    walls = [e["wall"] for e in state["epochs"]]
    assert len(walls) == 2 and walls == sorted(walls)  # the epoch cap ends it, not the (long) budget
    assert all(e["cpu"] > 0 and e["valid_elbo"] < 0 for e in state["epochs"])
    best = max(state["epochs"], key=lambda e: e["valid_elbo"])
    row = json.loads(results.read_text())["records"]["mnist-1layer-15min"]
    ev = json.loads((run / "speedrun-eval.json").read_text())
    assert ev["checkpoint"].endswith("best.pt") and ev["epoch"] == best["epoch"] == row["scored_epoch"]
    assert row["nll"] == pytest.approx(-ev["importance"]["log_px"]) and row["nll"] <= -row["elbo"] + 1e-6
    assert row["minutes_to_scored"] == pytest.approx(best["wall"] / 60)
    assert row["reached"] is False and row["nll"] > 86.76  # two epochs on 500 digits
    assert [p["from_epoch"] for p in row["train_parts"]] == [1]  # one part (a resumed one adds its own)
    assert row["psis_share_above_0.7"] == ev["psis"]["share_above_threshold"]
    assert row["curve"] and all(p["K"] == speedrun.QUICK["curve_importance"] for p in row["curve"])
    assert (results.with_suffix(".png")).stat().st_size > 0
    table = capsys.readouterr().out
    assert all(f"| {name}:" in table for name in speedrun.RECORDS)  # every record, run or not
    before = (run / "checkpoints" / "last.pt").stat().st_mtime_ns
    assert speedrun.main(argv) == 0
    assert (run / "checkpoints" / "last.pt").stat().st_mtime_ns == before
    assert json.loads((run / speedrun.STATE).read_text())["epochs"] == state["epochs"]


def test_a_resumed_record_names_each_parts_first_epoch_and_commit(tmp_path):
    """A record stopped after one epoch and resumed: two parts, from epochs 1 and 2, each with its commit, and
    the wall clock summed over them."""
    torch.set_num_threads(1)
    results, runs = tmp_path / "speedrun.json", tmp_path / "runs"
    argv = ["mnist-1layer-15min", "--quick", "--threads", "1", "--eval-threads", "1", "--set", "data.name=mnist-5k",
            "--budget-minutes", "30", "--runs-dir", str(runs), "--results", str(results)]  # fmt: skip
    assert speedrun.main([*argv, "--set", "train.epochs=1"]) == 0
    run = runs / "mnist-1layer-15min-quick"
    state = json.loads((run / speedrun.STATE).read_text())
    del state["trained"]  # as if the process had stopped after its first epoch
    (run / speedrun.STATE).write_text(json.dumps(state))
    assert speedrun.main([*argv, "--set", "train.epochs=2"]) == 0
    state = json.loads((run / speedrun.STATE).read_text())
    assert [e["epoch"] for e in state["epochs"]] == [1, 2] and state["epochs"][1]["wall"] > state["epochs"][
        0
    ]["wall"]
    row = json.loads(results.read_text())["records"]["mnist-1layer-15min"]
    assert (
        [p["from_epoch"] for p in row["train_parts"]] == [1, 2] == [p["from_epoch"] for p in state["parts"]]
    )
    assert all(p["commit"] and p["started_at"] for p in row["train_parts"])


def test_a_rerun_is_stored_beside_the_record_with_its_paired_difference(tmp_path):
    """--rerun trains the record again in its own folder; the paired mean difference over the same test images
    equals the difference of the two NLLs, its standard error is that of the image-by-image differences of the
    two evaluations' per-image log p(x), and the record's own number is left as it was."""
    torch.set_num_threads(1)
    results = tmp_path / "speedrun.json"
    argv = ["mnist-1layer-15min", "--quick", "--threads", "1", "--eval-threads", "1", "--set", "data.name=mnist-5k",
            "--budget-minutes", "30", "--runs-dir", str(tmp_path / "runs"), "--results", str(results)]  # fmt: skip
    with pytest.raises(SystemExit, match="holds no record mnist-1layer-15min"):
        speedrun.main([*argv, "--rerun"])
    assert not (tmp_path / "runs" / "mnist-1layer-15min-rerun-quick").exists()  # refused before training
    assert speedrun.main(argv) == 0
    before = json.loads(results.read_text())["records"]["mnist-1layer-15min"]
    assert speedrun.main([*argv, "--rerun", "--set", "train.seed=1"]) == 0
    row = json.loads(results.read_text())["records"]["mnist-1layer-15min"]
    again = row.pop("rerun")
    assert row == before
    assert Path(again["run"]).name == "mnist-1layer-15min-rerun-quick" != Path(row["run"]).name
    assert again["nll_minus_record"] == pytest.approx(again["nll"] - row["nll"], abs=1e-9)
    assert again["within_record_stderr"] == (abs(again["nll_minus_record"]) <= row["stderr"])
    # the two evaluations' per-image log p(x), image by image: record - rerun = NLL rerun - NLL record
    a, b = (json.loads((Path(r["run"]) / "speedrun-eval.json").read_text()) for r in (row, again))
    a, b = a["importance"]["per_datum"], b["importance"]["per_datum"]
    assert len(a) == len(b) == speedrun.QUICK["images"]
    assert -statistics.fmean(a) == pytest.approx(row["nll"], rel=1e-12)  # the files are the scored ones
    assert -statistics.fmean(b) == pytest.approx(again["nll"], rel=1e-12)
    d = [x - y for x, y in zip(a, b)]
    assert again["nll_minus_record"] == pytest.approx(statistics.fmean(d), rel=1e-12, abs=1e-12)
    assert again["paired_stderr"] == pytest.approx(statistics.stdev(d) / math.sqrt(len(d)), rel=1e-9)
    assert again["paired_stderr"] > 0


def _row(nll: float, minutes: float) -> dict:
    return {"nll": nll, "stderr": 0.2, "minutes_to_scored": minutes, "cpu_minutes_to_scored": minutes,
            "budget_minutes": 60.0, "reached": False, "model": "vae", "scored_epoch": 9, "epochs_trained": 10,
            "psis_share_above_0.7": 0.5, "machine": {"cpu_model": "cpu"}, "threads": 1, "load_average_max": 1.0,
            "measured_at": "t", "git_commit": "abcdef0", "command": "c"}  # fmt: skip


def test_an_unrun_open_record_shows_the_best_number_so_far_on_its_data_within_its_budget():
    """'Any vaelab model' admits every other record's model: an unrun one shows the lowest NLL among the records
    on its data set scored within its budget (80.5 at 500 min is over it); another rule or data set: 'not run'."""
    rows = {"mnist-1layer-15min": _row(86.1, 12.0), "mnist-2layer-2h": _row(82.3, 100.0),
            "mnist-any-4h": _row(83.0, 200.0), "mnist-1layer-60min": _row(80.5, 500.0)}  # fmt: skip
    first = speedrun.table(rows).split("\n\n")[0].splitlines()[2:]  # the records, not the commands
    lines = {ln.split(":")[0].strip("| "): ln for ln in first}
    assert "best so far 82.30 ± 0.20 (mnist-2layer-2h) | 100.0 min | no |" in lines["mnist-any-8h"]
    assert "| not run | | no |" in lines["fashion-vampprior"]
    assert speedrun.best_so_far(speedrun.RECORDS["mnist-any-4h"], {}) is None
    assert speedrun.best_so_far(speedrun.RECORDS["mnist-2layer-2h"], rows) is None  # a fixed-model record
    assert (
        len(lines) == len(speedrun.RECORDS) and len({ln.count("|") for ln in first}) == 1
    )  # aligned columns


def test_a_worse_attempt_joins_the_records_attempts_and_a_better_one_takes_its_place(tmp_path):
    """merge keeps the lower test NLL as the record; the other run is kept in `attempts` (score, model, command),
    across any number of attempts, and the table lists them apart from the records."""
    path = tmp_path / "speedrun.json"
    first, worse, better = (
        {**_row(nll, 100.0), "model": m, "command": c}
        for nll, m, c in ((82.5, "vampprior", "a"), (82.7, "vae", "b"), (81.9, "hierarchical", "c"))
    )
    speedrun.merge("mnist-any-4h", dict(first), path)
    speedrun.merge("mnist-any-4h", dict(worse), path)
    row = speedrun.read_rows(path)["mnist-any-4h"]
    assert (row["nll"], row["command"]) == (82.5, "a")
    assert [(t["nll"], t["model"], t["command"], t["cpu_model"]) for t in row["attempts"]] == [
        (82.7, "vae", "b", "cpu")
    ]
    speedrun.merge("mnist-any-4h", dict(better), path)
    row = speedrun.read_rows(path)["mnist-any-4h"]
    assert (row["nll"], row["model"]) == (81.9, "hierarchical")
    assert [t["nll"] for t in row["attempts"]] == [82.7, 82.5] and "curve" not in row["attempts"][1]
    rows = {k: {**v, "curve": [], "target": 82.0} for k, v in speedrun.read_rows(path).items()}
    for r in rows.values():
        r.setdefault("trained_at", "t")
    tried = speedrun.table(rows).split("\n\n")[-1].splitlines()
    assert tried[0].startswith("| record | other attempt") and len(tried) == 4
    assert "| mnist-any-4h | 82.50 ± 0.20 | vampprior, 9 of 10 |" in tried[3]
