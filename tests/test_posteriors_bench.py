"""benchmarks/posteriors.py (what a flow buys, issue #20 part 5): its budgeted training and resume, and its quick
mode on offline data (mnist-5k, the 8x8 digits), checked for what the results must say: the gap is IS log p(x)
minus the ELBO of the same draws, the scored checkpoint is the validation's, a re-run trains nothing."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import posteriors

from vaelab_testing import assert_one_line_error, small_config

DATA = ("mnist-5k", "digits")
POSTERIORS = ("gaussian", "planar:2", "iaf:1:16")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick mode on 2 offline data sets x 3 posteriors (6 cells), once for the module."""
    root = tmp_path_factory.mktemp("posteriors")
    args = ["--quick", "--data", ",".join(DATA), "--posteriors", ",".join(POSTERIORS)]
    args += ["--data-dir", str(root / "data"), "--runs-dir", str(root / "runs")]
    args += ["--results", str(root / "posteriors.json")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAELAB_OFFLINE", "1")
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        assert posteriors.main(args) == 0
    return root, args, json.loads((root / "posteriors.json").read_text())


@pytest.mark.slow
def test_every_cell_reports_nll_elbo_and_their_gap_over_the_same_draws(quick):
    """Each cell's numbers are those of its per-image values, recomputed by the same evaluation (best.pt, the
    same K, images and seed: the same draws): standard errors over images, the k-hat share, and the count of
    the loaded model's parameters."""
    import vaelab
    from vaelab.evaluate import EvalSettings, run_evaluation

    _, _, body = quick
    cells = body["figures"]["cells"]
    assert set(cells) == {f"{d}/{p}" for d in DATA for p in POSTERIORS}
    for key, c in cells.items():
        e = c["test"]
        assert e["images"] == 100 and e["importance_K"] == 50, key
        assert e["nll"]["value"] == -e["log_px"]["value"]
        assert e["gap"]["value"] == pytest.approx(e["log_px"]["value"] - e["elbo"]["value"], abs=1e-9)
        # log mean exp of an image's K weights is at least their mean: image by image, hence on average
        assert e["gap"]["min_per_image"] >= -1e-5, key
        assert e["gap"]["value"] >= -1e-6 and e["gap"]["value"] >= e["gap"]["min_per_image"] - 1e-9, key
        ev = run_evaluation(c["run"], None, EvalSettings(importance=50, limit=100, seed=0, which="best"))
        res = ev.estimates["importance"].result
        log_px, elbo = res.log_px.double().tolist(), res.elbo.double().tolist()
        gap = [a - b for a, b in zip(log_px, elbo)]
        assert len(gap) == 100 and ev.meta["epoch"] == e["best_epoch"], key
        assert e["log_px"]["value"] == pytest.approx(statistics.fmean(log_px), rel=1e-12, abs=1e-12), key
        assert e["elbo"]["value"] == pytest.approx(statistics.fmean(elbo), rel=1e-12, abs=1e-12), key
        assert e["gap"]["min_per_image"] == pytest.approx(min(gap), rel=1e-12, abs=1e-12), key
        # standard errors over the 100 images: sample standard deviation (n - 1) / sqrt(n)
        for block, values in ((e["nll"], log_px), (e["elbo"], elbo), (e["gap"], gap)):
            se = statistics.stdev(values) / len(values) ** 0.5
            assert block["stderr"] == pytest.approx(se, rel=1e-9), key
        k_hat = ev.estimates["psis"].per_datum.tolist()
        share = sum(k > posteriors.KHAT for k in k_hat) / len(k_hat)
        assert e["k_hat_share_above"] == pytest.approx(share, abs=1e-9), key
        assert e["k_hat_mean"] == pytest.approx(statistics.fmean(k_hat), rel=1e-6), key
        model = vaelab.load(c["run"], which="best")
        assert e["parameters"] == sum(p.numel() for p in model.parameters()), key


@pytest.mark.slow
def test_the_scored_checkpoint_is_best_pt_chosen_by_validation_and_evaluation_repeats_it(quick):
    from vaelab.evaluate import evaluate

    _, _, body = quick
    for c in body["figures"]["cells"].values():
        curve = c["training"]["curve"]
        best = max(curve, key=lambda r: (r["valid_elbo"], -r["epoch"]))  # the first of equals
        assert c["test"]["best_epoch"] == best["epoch"]
        assert c["training"]["epochs"] == len(curve) and [r["epoch"] for r in curve] == list(
            range(1, len(curve) + 1)
        )
        assert c["training"]["seconds_per_epoch_median"] == statistics.median(r["seconds"] for r in curve)
        assert c["training"]["cpu_seconds"] > 0 and c["training"]["wall_seconds"] > 0
    for key in ("digits/gaussian", "mnist-5k/iaf:1:16"):  # scored again by vaelab.evaluate: the same numbers
        c = body["figures"]["cells"][key]
        r = evaluate(c["run"], importance=50, limit=100, seed=0)
        assert Path(r["checkpoint"]).name == "best.pt" and r["epoch"] == c["test"]["best_epoch"]
        assert r["importance"]["log_px"] == c["test"]["log_px"]["value"]
        assert r["elbo"]["estimate"] == c["test"]["elbo"]["value"]


@pytest.mark.slow
def test_every_cell_trains_the_same_model_but_for_its_posterior(quick):
    _, _, body = quick
    for c in body["figures"]["cells"].values():
        cfg = c["config"]
        assert cfg["model"]["posterior"] == c["posterior"]
        assert cfg["objective"]["kl"] == ("analytic" if c["posterior"] == "gaussian" else "mc")
        assert cfg["model"]["hidden"] == [300, 300] and cfg["model"]["latent_dim"] == 40
        assert cfg["model"]["activation"] == "gated" and cfg["train"]["lr"] == 5e-4
        assert cfg["objective"]["warmup_epochs"] == 10 and cfg["data"]["valid_fraction"] == 0.1
        assert cfg["data"]["binarize"] == "dynamic" and cfg["train"]["precision"] == "bf16"
        assert c["training"]["curve"][0]["beta"] == pytest.approx(0.1)  # epoch 1 of a 10-epoch warm-up
        assert c["threads"] == 1 and c["machine"]["cpu_model"]


@pytest.mark.slow
def test_the_table_lists_every_cell_from_the_results_file(quick, capsys):
    root, _, body = quick
    capsys.readouterr()
    assert posteriors.main(["--table", "--results", str(root / "posteriors.json")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(DATA) * len(POSTERIORS)
    for c in body["figures"]["cells"].values():
        e = c["test"]
        row = f"| {c['data']} | {c['posterior']} | {e['nll']['value']:.2f} ± {e['nll']['stderr']:.2f} |"
        assert sum(line.startswith(row) for line in rows) == 1, row
        assert f"| {e['gap']['value']:.2f} ± " in out
    assert "KL(q(z|x) || p(z|x))" in out and "slack" in out


@pytest.mark.slow
def test_a_rerun_skips_scored_cells_and_rescores_a_lost_one_without_training(quick, capsys):
    root, args, body = quick
    path = root / "posteriors.json"
    lasts = sorted((root / "runs").glob("*/checkpoints/last.pt"))
    assert len(lasts) == 6
    stamps = {p: p.stat().st_mtime_ns for p in lasts}
    capsys.readouterr()
    assert posteriors.main(args) == 0
    assert capsys.readouterr().out.count("with these settings: skipped") == 6
    assert json.loads(path.read_text())["figures"]["cells"] == body["figures"]["cells"]
    cut = json.loads(path.read_text())
    lost = cut["figures"]["cells"].pop("digits/planar:2")  # as if killed after training, before its entry
    path.write_text(json.dumps(cut))
    assert posteriors.main(args) == 0
    again = json.loads(path.read_text())["figures"]["cells"]["digits/planar:2"]
    same = lambda e: {k: v for k, v in e.items() if k != "eval_seconds"}  # noqa: E731
    assert (
        same(again["test"]) == same(lost["test"]) and again["training"]["curve"] == lost["training"]["curve"]
    )
    assert again["training"]["resumed"] is True
    assert {p: p.stat().st_mtime_ns for p in lasts} == stamps  # no checkpoint was written again


def test_a_budget_is_spent_in_whole_epochs_and_a_run_is_continued_not_restarted(tmp_path):
    from vaelab.runs import RunDir

    out = tmp_path / "run"
    cfg = small_config(**{"train.epochs": 3})
    one = posteriors.train_for_budget(cfg, out, budget_s=0.0)  # the first epoch always runs
    assert (
        len(one["history"]) == one["trained_now"] == 1 and one["sessions"] == 1 and one["budget_spent"] == 0
    )
    last = out / "checkpoints" / "last.pt"
    stamp = last.stat().st_mtime_ns
    same = posteriors.train_for_budget(cfg, out, budget_s=0.0)  # that budget is spent: nothing to train
    assert same["trained_now"] == 0 and same["history"] == one["history"] and last.stat().st_mtime_ns == stamp
    capped = posteriors.train_for_budget(cfg.replace(**{"train.epochs": 2}), out, budget_s=3600.0)
    assert capped["resumed"] and capped["trained_now"] == 1 and capped["budget_spent"] is None
    more = posteriors.train_for_budget(cfg, out, budget_s=3600.0)  # a higher epoch cap continues it again
    assert more["resumed"] and more["trained_now"] == 1 and more["sessions"] == 3
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [1, 2, 3]
    assert more["history"][0] == one["history"][0]
    assert more["wall_seconds"] > one["wall_seconds"] and more["cpu_seconds"] > one["cpu_seconds"]
    other = posteriors.train_for_budget(cfg.replace(**{"model.latent_dim": 3}), out, budget_s=3600.0)
    assert not other["resumed"] and other["trained_now"] == 3 and other["sessions"] == 1


@pytest.mark.parametrize(
    ("value", "needle"),
    [("gaussian,planar:0", "'planar:0'"), ("foo", "unknown model.posterior 'foo'"), ("iaf", "'iaf'")],
)
def test_a_bad_posterior_is_a_one_line_error_naming_it(value, needle, tmp_path, capsys):
    code = posteriors.main(["--posteriors", value, "--results", str(tmp_path / "r.json")])
    assert_one_line_error(capsys, code, "--posteriors", needle)
    assert not (tmp_path / "r.json").exists()


def test_quick_mode_writes_outside_the_repository_and_yields_to_explicit_flags():
    a = posteriors.parse(["--quick", "--importance", "30"])
    assert a.importance == 30 and a.eval_images == 100 and a.train_limit == 1000 and a.max_epochs == 2
    assert posteriors.RESULTS not in a.results.parents and posteriors.ROOT not in Path(a.runs_dir).parents
    full = posteriors.parse([])
    assert (full.importance, full.eval_images, full.budget_minutes, full.threads) == (1000, 10_000, 10.0, 1)
    assert full.results == posteriors.RESULTS / "posteriors.json" and full.precision == "bf16"
