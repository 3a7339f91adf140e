"""benchmarks/kingma2014.py (Kingma & Welling 2014, figures 2 and 3): its helpers, and its quick mode on mnist-5k
and a synthetic Frey Face file, checked for what the results must say (axes, curve lengths, IS >= ELBO, resume)."""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import kingma2014

from vaelab_testing import tiny_frey_face


def test_checkpoint_epochs_double_up_to_the_last_epoch():
    assert kingma2014.checkpoint_epochs(200, 8) == [2, 4, 7, 13, 25, 50, 100, 200]
    assert kingma2014.checkpoint_epochs(20, 8) == [1, 2, 3, 5, 10, 20]
    assert kingma2014.checkpoint_epochs(4, 8) == [1, 2, 4]
    assert kingma2014.checkpoint_epochs(7, 0) == []


def test_a_budget_is_spent_in_whole_epochs():
    assert kingma2014.epochs_for(480_000, 60_000) == 8
    assert kingma2014.epochs_for(353_800, 1769) == 200
    assert kingma2014.epochs_for(1, 1769) == 1
    assert kingma2014.epochs_for(1001, 1000) == 2


def test_paired_difference_and_its_standard_error():
    d = kingma2014.paired([3.0, 5.0, 7.0, 9.0], [1.0, 2.0, 3.0, 4.0])  # differences 2, 3, 4, 5
    assert d["mean"] == pytest.approx(3.5)
    assert d["stderr"] == pytest.approx(math.sqrt(np.var([2, 3, 4, 5], ddof=1) / 4))


def test_the_default_plan_is_the_papers_panels():
    a = kingma2014.parse(["--data-dir", "/nowhere"])
    specs = kingma2014.plan(a)
    fig2 = {(s.dataset, s.latent, s.hidden) for s in specs if s.figure == 2}
    assert fig2 == {("mnist", nz, 500) for nz in (3, 5, 10, 20, 200)} | {
        ("frey-face", nz, 200) for nz in (2, 5, 10, 20)
    }
    assert {s.objective for s in specs if s.figure == 2} == {"elbo", "wake-sleep"}
    fig3 = {(s.train_size, s.objective): s for s in specs if s.figure == 3}
    assert set(fig3) == {(n, o) for n in (1000, 50000) for o in ("elbo", "wake-sleep", "mcem")}
    assert all(s.latent == 3 and s.hidden == 100 for s in fig3.values())
    assert fig3[(50000, "mcem")].budget == a.mcem_budget < fig3[(50000, "elbo")].budget
    assert len({s.key for s in specs}) == len(specs)


def test_summary_compares_aevb_with_wake_sleep_per_panel():
    def run(dataset, obj, nz, train, test):
        spec = kingma2014.RunSpec(2, dataset, obj, nz, 10, 0, 100)
        final = {"samples": 100, "train_elbo": train, "train_elbo_running": train - 1, "test_elbo": test}
        return {"done": True, "spec": asdict(spec), "final": final}

    runs = {
        "a": run("mnist", "elbo", 3, -150.0, -152.0),
        "b": run("mnist", "wake-sleep", 3, -155.0, -156.0),
        "c": run("mnist", "elbo", 20, -110.0, -112.0),
        "d": run("mnist", "wake-sleep", 20, -130.0, -131.0),
    }
    s = kingma2014.summarise(runs)
    assert s["figure_2"]["mnist/nz3"]["aevb_minus_ws_train_elbo"] == pytest.approx(5.0)
    assert s["figure_2"]["mnist/nz20"]["aevb_minus_ws_test_elbo"] == pytest.approx(19.0)
    assert s["shape"]["aevb_above_ws_every_panel"] is True
    assert s["shape"]["mnist_gap_by_nz"] == {"3": 5.0, "20": 20.0}
    assert s["shape"]["mnist_gap_largest_nz_above_smallest"] is True
    runs["d"]["final"]["train_elbo"] = -100.0
    assert kingma2014.summarise(runs)["shape"]["aevb_above_ws_every_panel"] is False


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick mode on mnist-5k (offline) and a 300-frame synthetic Frey Face file, once for the module."""
    root = tmp_path_factory.mktemp("kingma2014")
    tiny_frey_face(root / "data", frames=300)
    args = ["--quick", "--data-dir", str(root / "data"), "--runs-dir", str(root / "runs")]
    args += ["--results", str(root / "kingma2014.json")]
    assert kingma2014.main(args) == 0
    return root, args, json.loads((root / "kingma2014.json").read_text())


@pytest.mark.slow
def test_quick_mode_axes_count_training_samples_and_curves_have_one_point_per_epoch(quick):
    _, _, body = quick
    runs = body["figures"]["runs"]
    assert len(runs) == 10 and all(r["done"] for r in runs.values())
    for key, r in runs.items():
        n, spec = r["train_images"], r["spec"]
        assert r["epochs"] == r["epochs_planned"] == math.ceil(spec["budget"] / n), key
        assert spec["budget"] <= r["budget_samples"] < spec["budget"] + n
        assert len(r["curve"]) == r["epochs"]
        assert [p["epoch"] for p in r["curve"]] == list(range(1, r["epochs"] + 1))
        assert all(p["samples"] == p["epoch"] * n for p in r["curve"]), key
        assert r["samples"] == r["epochs"] * n
        assert r["wall_seconds"] >= r["train_seconds"] > 0 and r["cpu_seconds"] > 0
    assert {r["train_images"] for k, r in runs.items() if k.startswith("fig3")} == {200, 500}
    assert {r["train_images"] for k, r in runs.items() if k.startswith("fig2/mnist")} == {500}
    assert {r["train_images"] for k, r in runs.items() if k.startswith("fig2/frey")} == {270}  # 300 - 30 test


@pytest.mark.slow
def test_quick_mode_importance_sampling_is_at_the_checkpoints_and_above_the_elbo(quick):
    _, _, body = quick
    fig3 = {k: r for k, r in body["figures"]["runs"].items() if r["spec"]["figure"] == 3}
    assert len(fig3) == 6
    for key, r in fig3.items():
        points = r["is_curve"]
        assert [p["epoch"] for p in points] == kingma2014.checkpoint_epochs(r["epochs"], 3), key
        curve = {p["epoch"]: p for p in r["curve"]}
        for p in points:
            assert p["samples"] == p["epoch"] * r["train_images"]
            for split, images in (("train", min(200, r["train_images"])), ("test", 100)):
                e = p[split]
                assert e["K"] == 20 and e["images"] == images
                # the same K draws: log mean exp of the weights is at least their mean, image by image
                assert e["log_px"] >= e["elbo"] - 1e-9
            # the trainer's one-draw ELBO of that epoch, on the same images and binarization
            for split, key_elbo in (("train", "train_elbo"), ("test", "test_elbo")):
                assert p[split]["log_px"] >= curve[p["epoch"]][key_elbo] - 3 * p[split]["stderr"], (key, p)
    # with the same draws of the same images, K=20 importance weights beat the one-draw ELBO on average
    gaps = [p["test"]["log_px"] - p["test"]["elbo"] for r in fig3.values() for p in r["is_curve"]]
    assert min(gaps) >= 0 and sum(gaps) / len(gaps) > 0.1


@pytest.mark.slow
def test_quick_mode_records_the_machine_and_summarises_every_panel(quick):
    """The machine, the figure-2 differences, and figure 3's paired panels recomputed from the per-image IS
    values of each run's last.pt (scored again the panel's way: the same images, K and seed)."""
    from vaelab import evaluate

    root, args, body = quick
    a = kingma2014.parse(args)
    m = body["machine"]
    assert m["threads"] == 1
    assert m["avx512_bf16"] == ("avx512_bf16" in Path("/proc/cpuinfo").read_text())
    assert m["cpu_model"]
    s = body["figures"]["summary"]
    assert set(s["figure_2"]) == {"mnist/nz3", "frey-face/nz2"}
    assert set(s["figure_3"]) == {"n200", "n500"}
    runs = body["figures"]["runs"]
    p = s["figure_2"]["mnist/nz3"]
    expect = (
        runs["fig2/mnist/nz3/elbo"]["final"]["train_elbo"]
        - runs["fig2/mnist/nz3/wake-sleep"]["final"]["train_elbo"]
    )
    assert p["aevb_minus_ws_train_elbo"] == pytest.approx(expect)
    paired = body["figures"]["paired_test_log_px"]
    assert set(paired) == {"n200", "n500"}
    for name, panel in paired.items():
        assert panel["images"] == 100
        last = {
            o: runs[f"fig3/mnist/{name}/nz3/{o}"]["is_curve"][-1]["test"]["log_px"] for o in ("elbo", "mcem")
        }
        assert (
            panel["elbo_reproduces_final"] and panel["mcem_reproduces_final"]
        )  # the same seed, the same number
        # the mean of the image-by-image differences is the difference of the means
        assert panel["elbo_minus_mcem"]["mean"] == pytest.approx(last["elbo"] - last["mcem"], abs=1e-6)
        # each run's last.pt scored again as the panel was (its test images, K and seed): the per-image values
        log_px = {}
        for o in ("elbo", "mcem"):
            spec = kingma2014.RunSpec(**runs[f"fig3/mnist/{name}/nz3/{o}"]["spec"])
            _, _, test = kingma2014.splits_for(spec, kingma2014.config_for(spec, a), a)
            folder = Path(a.runs_dir) / spec.key.replace("/", "_")
            r = evaluate(folder, test, importance=a.k, which="last", seed=a.seed)
            log_px[o] = r["importance"]["per_datum"]
            assert len(log_px[o]) == 100 and statistics.fmean(log_px[o]) == pytest.approx(
                panel[f"{o}_log_px"], rel=1e-12
            )
        # paired over images: the mean and standard error (n - 1) of the image-by-image differences
        d = [x - y for x, y in zip(log_px["elbo"], log_px["mcem"])]
        assert panel["elbo_minus_mcem"]["mean"] == pytest.approx(statistics.fmean(d), rel=1e-12, abs=1e-12)
        assert panel["elbo_minus_mcem"]["stderr"] == pytest.approx(
            statistics.stdev(d) / math.sqrt(len(d)), rel=1e-9
        )
    with Image.open(root / "kingma2014.png") as im:  # two figure-2 rows and one figure-3 row, two panels wide
        assert im.size == (round(3.2 * 2 * 110), round((3.0 * 3 + 0.6) * 110))


@pytest.mark.slow
def test_a_rerun_keeps_finished_runs_and_resumes_an_unfinished_one(quick, capsys):
    root, args, body = quick
    path = root / "kingma2014.json"
    assert json.loads(json.dumps(body)) == body  # strict JSON, no NaN
    key = "fig3/mnist/n500/nz3/elbo"
    cut = json.loads(path.read_text())
    lost = cut["figures"]["runs"][key]["is_curve"].pop()  # as if killed after the checkpoint, before its IS
    cut["figures"]["runs"][key]["done"] = False
    path.write_text(json.dumps(cut))
    capsys.readouterr()
    assert kingma2014.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier, kept") == 9
    again = json.loads(path.read_text())["figures"]["runs"]
    r = again[key]
    assert r["done"] and r["resumed"]
    assert r["is_curve"][-1]["test"]["log_px"] == pytest.approx(lost["test"]["log_px"], abs=1e-9)
    assert r["curve"] == body["figures"]["runs"][key]["curve"]  # the history, read back from the checkpoint
    for k, old in body["figures"]["runs"].items():
        if k != key:
            assert again[k] == old


@pytest.mark.slow
def test_a_larger_budget_continues_the_finished_runs_from_their_checkpoints(quick):
    root, args, _ = quick
    path = root / "kingma2014.json"
    before = json.loads(path.read_text())["figures"]["runs"]
    assert kingma2014.main([*args, "--fig3-small-budget", "1600"]) == 0  # the 200-image set: 4 -> 8 epochs
    after = json.loads(path.read_text())["figures"]["runs"]
    for obj in ("elbo", "wake-sleep", "mcem"):
        key = f"fig3/mnist/n200/nz3/{obj}"
        old, new = before[key], after[key]
        assert new["continued_from_budget"] == 800 and new["epochs"] == 8 and len(new["curve"]) == 8
        assert new["curve"][:4] == old["curve"]  # the first epochs are the finished run's, read back
        assert [p["epoch"] for p in new["is_curve"]] == [1, 2, 4, 8] == new["checkpoint_epochs"]
        assert new["is_curve"][:3] == old["is_curve"]
        assert new["wall_seconds"] > old["wall_seconds"]
    assert after["fig3/mnist/n500/nz3/elbo"] == before["fig3/mnist/n500/nz3/elbo"]
