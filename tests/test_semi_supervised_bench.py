"""benchmarks/semi_supervised.py's M1 recipes (issue #19): which M1 run and results key each names, what the
M1+M2 cells on it read (grey or binarized codes), that the first recipe keeps its old keys (its results resume)
and that the table counts only the cells of the default recipe."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import semi_supervised as ss


def args(tmp_path: Path, *more: str):
    """Parsed arguments with the runs and results under tmp_path (nothing is read or trained)."""
    return ss.parse(["--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"), *more])


def test_the_default_m1_recipe_is_known_and_gives_the_m1_epochs(tmp_path):
    assert ss.DEFAULT_M1 in ss.M1_RECIPES and ss.FIRST_M1 in ss.M1_RECIPES
    for name, recipe in ss.M1_RECIPES.items():
        a = args(tmp_path, "--m1-recipe", name)
        assert a.m1_epochs == recipe["epochs"]
        assert recipe["codes"] in ("binary", "grey")
    assert args(tmp_path, "--m1-epochs", "7").m1_epochs == 7


def test_an_unknown_m1_recipe_or_no_m1_epochs_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        args(tmp_path, "--m1-recipe", "nope")
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert e.value.code == 2 and len(err) == 1
    assert "--m1-recipe: unknown 'nope'" in err[0] and ss.DEFAULT_M1 in err[0]
    for flag in ("--m1-epochs", "--components"):
        with pytest.raises(SystemExit):
            args(tmp_path, flag, "0")
        assert flag in capsys.readouterr().err.splitlines()[-1]


def test_epochs_for_some_models_leave_the_others_at_their_recipes(tmp_path, capsys):
    assert args(tmp_path).epochs == ss.EPOCHS == {"m2": 200, "m1m2": 300, "adgm": 200}
    assert args(tmp_path, "--epochs", "adgm=50").epochs == {"m2": 200, "m1m2": 300, "adgm": 50}
    assert args(tmp_path, "--epochs", "7").epochs == dict.fromkeys(ss.MODELS, 7)
    with pytest.raises(SystemExit) as e:
        args(tmp_path, "--epochs", "vae=5")
    assert e.value.code == 2 and "--labels / --epochs: unknown model vae" in capsys.readouterr().err


def test_the_first_m1_recipe_keeps_its_run_folder_and_results_keys(tmp_path):
    """Its M1 keeps its key and folder; its M1+M2 cells' keys carry only M2's recipe and arithmetic."""
    a = args(tmp_path, "--m1-recipe", ss.FIRST_M1)
    key, out, cfg = ss.m1_plan(a)
    assert (key, out.name) == ("mnist/m1", "mnist-m1")
    assert (cfg.model.hidden, cfg.model.latent_dim, cfg.train.precision) == ((600, 600), 50, "fp32")
    key, out, cfg, meta = ss.cell_plan(a, "m1m2", 100, 2, tmp_path / "runs" / "mnist-m1")
    recipe = "active-diagonal-q-f32logits"
    assert key == f"mnist/m1m2/100/d2/{recipe}" and out.name == f"mnist-m1m2-100-d2-{recipe}"
    assert cfg.data.binarize == "dynamic" and cfg.data.label_seed == 2 and cfg.data.labelled == 100
    assert meta["m1_recipe"] == ss.FIRST_M1 and meta["recipe"] == recipe


@pytest.mark.parametrize("name", sorted(set(ss.M1_RECIPES) - {ss.FIRST_M1}))
def test_another_m1_recipe_gets_its_own_run_and_its_cells_read_its_codes(tmp_path, name):
    recipe = ss.M1_RECIPES[name]
    a = args(tmp_path, "--m1-recipe", name, "--m1-epochs", "9")
    key, out, cfg = ss.m1_plan(a)
    assert (key, out.name, cfg.train.epochs) == (f"mnist/m1/{name}", f"mnist-m1-{name}", 9)
    flat = recipe["config"]
    assert cfg.model.name == flat["model.name"] and tuple(cfg.model.hidden) == tuple(flat["model.hidden"])
    for k, v in flat.items():
        section, field = k.split(".", 1)
        if section in ("train", "objective") and "." not in field:
            assert getattr(getattr(cfg, section), field) == v, k
    key, run, cell, meta = ss.cell_plan(a, "m1m2", 600, 0, out)
    assert key == f"mnist/m1m2/600/d0/active-diagonal-q-f32logits/m1-{name}" and "/" not in run.name
    assert cell.model.features == str(out.resolve())
    grey = recipe["codes"] == "grey"
    assert (cell.data.binarize, cell.model.likelihood) == (
        ("none", "gaussian") if grey else ("dynamic", "bernoulli")
    )
    assert (meta["m1_recipe"], meta["m1_epochs"], meta["m1_setting"]) == (name, 9, recipe["setting"])
    assert "code_components" not in cell.model.extra and meta["components"] == 1
    a3 = args(tmp_path, "--m1-recipe", name, "--components", "3", "--code-cov", "full")
    key3, run3, cell3, meta3 = ss.cell_plan(a3, "m1m2", 100, 1, out)
    assert key3 == f"mnist/m1m2/100/d1/active-full-model-k3-f32logits/m1-{name}" and run3 != run
    assert cell3.model.extra["code_components"] == 3 and cell3.model.extra["code_cov"] == "full"
    assert meta3["components"] == 3 and meta3["recipe"] == f"active-full-model-k3-f32logits/m1-{name}"
    _, _, m2, meta = ss.cell_plan(a, "m2", 100, 0, None)  # M2 alone does not depend on the M1 recipe
    assert not m2.model.features and m2.data.binarize == "dynamic" and "m1_recipe" not in meta


def test_gradient_clipping_is_a_recipe_of_its_own(tmp_path, capsys):
    """--grad-clip / --grad-clip-value reach the cells' config and name their recipe, so clipped and unclipped
    cells neither share a run folder nor a table row; a negative bound is refused."""
    key, run, cfg, meta = ss.cell_plan(args(tmp_path), "adgm", 100, 0, None)
    clip = (meta["recipe"], cfg.train.grad_clip, cfg.train.grad_clip_value)
    assert key == "mnist/adgm/100/d0/bf16-f32logits" and clip == ("bf16-f32logits", 0, 0)
    a = args(tmp_path, "--grad-clip", "5", "--grad-clip-value", "1")
    key, run2, cfg, meta = ss.cell_plan(a, "adgm", 100, 0, None)
    recipe = "bf16-f32logits-clip5v1"
    assert key == f"mnist/adgm/100/d0/{recipe}" and run2 != run and meta["recipe"] == recipe
    assert (cfg.train.grad_clip, cfg.train.grad_clip_value, cfg.model.name) == (5.0, 1.0, "adgm")
    assert not ss.current({"model": "adgm", "recipe": meta["recipe"]})
    key, _, _, meta = ss.cell_plan(args(tmp_path, "--grad-clip", "5"), "m1m2", 100, 0, tmp_path / "m1")
    assert meta["recipe"] == ss.m1m2_recipe(ss.DEFAULT_M1, 1, "f32logits", "diagonal") + "-clip5"
    assert key.endswith(meta["recipe"])
    with pytest.raises(SystemExit):
        args(tmp_path, "--grad-clip-value", "-1")
    assert "--grad-clip-value" in capsys.readouterr().err.splitlines()[-1]


def test_each_model_trains_in_its_own_precision_unless_told_and_the_adgms_names_its_recipe(tmp_path):
    """Every model trains in bf16 by default; --precision sets every cell. The ADGM's bf16 cells are recipe
    "bf16-f32logits" (its classifier's logits in float32), the table's; its fp32 cells "fp32" and its bf16 cells
    from before the float32 logits "" are off the table. M2's and M1+M2's recipes name their arithmetic too
    ("f32logits" in bf16, the table's; "fp32"); M2's untagged bf16-logit cells are off the table."""
    plan = {m: ss.cell_plan(args(tmp_path), m, 100, 0, tmp_path / "m1") for m in ss.MODELS}
    assert {m: p[2].train.precision for m, p in plan.items()} == {
        "m2": "bf16",
        "m1m2": "bf16",
        "adgm": "bf16",
    }
    assert plan["adgm"][3]["recipe"] == "bf16-f32logits" and ss.current(plan["adgm"][3])
    _, _, cfg, meta = ss.cell_plan(args(tmp_path, "--precision", "fp32"), "adgm", 100, 0, None)
    assert cfg.train.precision == "fp32" and meta["recipe"] == "fp32" and not ss.current(meta)
    assert not ss.current({"model": "adgm", "recipe": ""})
    _, _, cfg, meta = ss.cell_plan(args(tmp_path, "--precision", "fp32"), "m2", 100, 0, None)
    assert cfg.train.precision == "fp32" and meta["recipe"] == "fp32"
    assert plan["m2"][0] == "mnist/m2/100/d0/f32logits" and ss.current(plan["m2"][3])
    assert plan["m1m2"][3]["recipe"] == ss.m1m2_recipe(ss.DEFAULT_M1, 1, "f32logits", "diagonal")
    assert ss.current(plan["m1m2"][3]) and not ss.current({"model": "m2", "recipe": ""})


def test_the_table_counts_only_cells_of_the_default_m1_recipe():
    def cell(recipe: str, error: float) -> dict:
        best = {"epoch": 3, "valid_error": error, "test_error": error}
        return {"model": "m1m2", "labels": 100, "draw": 0, "recipe": recipe, "best": best, "done": True}

    new = ss.m1m2_recipe(ss.DEFAULT_M1, 1, "f32logits", "diagonal")
    cells = {"old": cell(ss.m1m2_recipe(ss.FIRST_M1), 0.06), "new": cell(new, 0.04)}
    cells["full covariance"] = cell(ss.m1m2_recipe(ss.DEFAULT_M1, 1, "f32logits"), 0.05)
    cells["bf16 logits"] = cell(ss.m1m2_recipe(ss.DEFAULT_M1), 0.5)
    cells["other"] = cell(ss.m1m2_recipe("some-other-m1"), 0.5)
    cells["new"]["epochs_done"] = cells["new"]["cpu_seconds"] = 5
    summary = ss.summarise(cells)["m1m2/100"]
    assert summary["draws"] == 1 and summary["test_error_percent"] == [pytest.approx(4.0)]
    del cells["new"]
    assert ss.table(cells) == "no cell of a model's current recipe yet (RECIPES)"


def test_a_measured_cell_whose_run_folder_is_gone_keeps_its_entry(tmp_path, monkeypatch, capsys):
    """A re-run on a machine without the cell's run folder must not train it afresh over its measured entry;
    a cell with no entry yet is trained."""
    results = tmp_path / "results.json"
    curve = [
        {"epoch": e, "seconds": 60.0, "valid_error": 0.3 - e / 100, "test_error": 0.3 - e / 100}
        for e in (1, 2)
    ]
    measured = {
        "model": "m2",
        "labels": 100,
        "draw": 0,
        "done": False,
        "epochs_planned": 100,
        "epochs_done": 2,
    }
    measured.update(
        curve=curve, best=ss.best_epoch(curve), cpu_seconds=120.0, run="mnist-m2-100-d0-f32logits"
    )
    ss.put_cell(results, "mnist/m2/100/d0/f32logits", measured)
    before = results.read_text()
    trained: list[str] = []
    monkeypatch.setattr(ss, "train_cell", lambda key, *rest: trained.append(key))
    a = args(  # M2 in bf16: recipe "f32logits"
        tmp_path,
        "--models",
        "m2",
        "--labels",
        "100",
        "--draws",
        "2",
        "--epochs",
        "11",
    )
    a.results = results
    ss.run_cells(a)
    assert trained == ["mnist/m2/100/d1/f32logits"]  # draw 0 kept, draw 1 (no entry) trained
    assert results.read_text() == before
    assert "mnist/m2/100/d0/f32logits: kept as measured (2 epochs)" in capsys.readouterr().out
    (tmp_path / "runs" / "mnist-m2-100-d0-f32logits" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "mnist-m2-100-d0-f32logits" / "checkpoints" / "last.pt").write_bytes(b"")
    ss.run_cells(a)  # with its run folder back, draw 0 resumes
    assert trained[-2:] == ["mnist/m2/100/d0/f32logits", "mnist/m2/100/d1/f32logits"]


def test_restart_lost_trains_an_unfinished_cell_afresh_but_keeps_a_finished_one(
    tmp_path, monkeypatch, capsys
):
    results = tmp_path / "results.json"
    curve = [{"epoch": 1, "seconds": 60.0, "valid_error": 0.2, "test_error": 0.2}]
    for draw, done in ((0, False), (1, True)):
        ss.put_cell(
            results,
            f"mnist/m2/100/d{draw}/f32logits",
            {"model": "m2", "labels": 100, "draw": draw, "done": done, "epochs_planned": 1 if done else 5}
            | {"epochs_done": 1, "curve": curve, "best": ss.best_epoch(curve)},
        )
    trained: list[str] = []
    monkeypatch.setattr(ss, "train_cell", lambda key, *rest: trained.append(key))
    a = args(tmp_path, "--models", "m2", "--labels", "100", "--draws", "2", "--epochs", "5", "--restart-lost")
    a.results = results
    ss.run_cells(a)
    out = capsys.readouterr().out
    assert trained == ["mnist/m2/100/d0/f32logits"]  # the finished draw 1 (5 > 1 epochs) keeps its entry
    assert "mnist/m2/100/d0/f32logits: no run to resume" in out and "d1/f32logits: kept as measured" in out


def test_an_m1_whose_run_folder_is_gone_is_retrained_and_its_measured_entry_moves_aside(
    tmp_path, monkeypatch, capsys
):
    """M1+M2 cells need M1's weights, so a missing M1 run is trained afresh; its measured entry (the one the kept
    cells stand on) is kept under KEY@n, never overwritten, and a second time takes the next n."""
    results = tmp_path / "results.json"
    a = args(tmp_path, "--m1-epochs", "4")
    a.results = results
    key, out, _ = ss.m1_plan(a)
    curve = [
        {"epoch": e, "seconds": 5.0, "valid_elbo": -100.0 + e, "test_elbo": -99.0 + e} for e in (1, 2, 3, 4)
    ]
    measured = {"model": "m1", "recipe": a.m1_recipe, "done": True, "epochs_planned": 4, "curve": curve}
    ss.put_cell(results, key, measured)
    trained: list[str] = []

    def fake_train(k, cfg, run, *rest):
        trained.append(k)
        ss.put_cell(results, k, {"model": "m1", "done": True, "epochs_planned": 4, "curve": curve[:1]})

    monkeypatch.setattr(ss, "train_cell", fake_train)
    assert ss.m1_run(a) == out and trained == [key]
    cells = ss.read_cells(results)
    assert cells[f"{key}@1"]["curve"] == curve and cells[f"{key}@1"]["moved_from"] == key
    assert cells[key]["curve"] == curve[:1]
    assert (
        f"{key}: no run in {out}; trained afresh, its measured entry kept as {key}@1"
        in capsys.readouterr().out
    )
    ss.m1_run(a)  # still no run folder (the fake trains nothing): the second entry goes to @2, @1 stays
    cells = ss.read_cells(results)
    assert cells[f"{key}@1"]["curve"] == curve and cells[f"{key}@2"]["curve"] == curve[:1]
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"")
    ss.m1_run(a)  # with its run folder there and done, nothing is trained
    assert trained == [key, key]


def test_a_table_row_gives_mean_sd_best_epochs_epochs_and_cpu_minutes():
    def cell(draw: int, error: float, best: int, cpu: float) -> dict:
        return {
            "model": "m2",
            "labels": 100,
            "draw": draw,
            "recipe": ss.RECIPES.get("m2", ""),
            "best": {"epoch": best, "valid_error": error, "test_error": error},
            "done": True,
            "epochs_done": 200,
            "cpu_seconds": cpu,
        }

    cells = {f"d{d}": cell(d, e, b, c) for d, e, b, c in ((0, 0.06, 157, 3000.0), (1, 0.08, 190, 3090.0))}
    row = ss.table(cells).splitlines()[2]
    assert row.startswith(
        "| 100 | 7.00 ± 1.41 (2 draws, epochs 157, 190 of 200, 200; 50, 52 CPU min) | 11.97"
    )
    cells["d1"]["done"] = False
    assert ss.table(cells).splitlines()[2].split(" | ")[1].endswith("CPU min) (unfinished)")


def test_the_papers_diagonal_m1m2_is_the_tables_recipe_with_its_settings(tmp_path, capsys):
    """The default (--code-cov diagonal): M2 on the active codes with the decoder's diagonal variance, read by
    q(y|z1), alpha 1, 300 epochs; --code-cov full is its own key and run folder, off the table; --components
    above 1 needs it, in one line."""
    a = args(tmp_path)
    assert a.code_cov == "diagonal" and a.epochs == {"m2": 200, "m1m2": 300, "adgm": 200}
    key, out, cfg, meta = ss.cell_plan(a, "m1m2", 100, 0, tmp_path / "m1")
    assert meta["recipe"] == "active-diagonal-q-f32logits/m1-" + ss.DEFAULT_M1 and key.endswith(
        meta["recipe"]
    )
    assert (cfg.model.extra["code_cov"], cfg.model.extra["classify"], cfg.model.extra["alpha"]) == (
        "diagonal",
        "q",
        1.0,
    )
    assert cfg.model.extra["active_sd"] == 0.1 and meta["code_cov"] == "diagonal" and ss.current(meta)
    assert cfg.train.epochs == 300
    full_key, full_out, full_cfg, full = ss.cell_plan(
        args(tmp_path, "--code-cov", "full"), "m1m2", 100, 0, tmp_path / "m1"
    )
    assert full_key != key and full_out != out and full_cfg.model.extra["code_cov"] == "full"
    assert full["recipe"] == "active-full-model-f32logits/m1-" + ss.DEFAULT_M1 and not ss.current(full)
    with pytest.raises(SystemExit):
        args(tmp_path, "--components", "2")
    assert "--components above 1 needs --code-cov full" in capsys.readouterr().err.splitlines()[-1]


def test_a_target_is_reached_only_over_three_draws_and_each_recipe_is_named():
    def cell(draw: int, error: float) -> dict:
        best = {"epoch": 9, "valid_error": error, "test_error": error}
        recipe = ss.RECIPES["adgm"]
        return {
            "model": "adgm",
            "labels": 100,
            "draw": draw,
            "recipe": recipe,
            "best": best,
            "done": True,
            "epochs_done": 9,
            "cpu_seconds": 60.0,
        }

    cells = {"d0": cell(0, 0.01), "d1": cell(1, 0.012)}
    lines = ss.verdicts(cells).splitlines()
    assert lines[0].startswith("recipes: M2 ") and f"ADGM {ss.RECIPES['adgm']}" in lines[0]
    assert lines[1] == "ADGM, 100 labels: 1.10% over 2 draws (target <= 1.5% over 3): on its way"
    cells["d2"] = cell(2, 0.014)
    assert ss.verdicts(cells).splitlines()[1].endswith("1.20% over 3 draws (target <= 1.5% over 3): reached")
    cells["d2"] = cell(2, 0.05)
    assert ss.verdicts(cells).splitlines()[1].endswith(": not reached")
    cells = {"d0": cell(0, 0.05)}
    assert (
        ss.verdicts(cells).splitlines()[1].endswith("5.00% over 1 draw (target <= 1.5% over 3): not reached")
    )


def test_batch_norm_is_its_own_adgm_recipe_and_the_adgms_only(tmp_path, capsys):
    """--batch-norm trains the ADGM's cells with model.extra.batch_norm under recipe "...-bn" (off the table
    until it is the ADGM's recipe); asked of another model it is refused in one line."""
    _, out, cfg, meta = ss.cell_plan(args(tmp_path, "--models", "adgm", "--batch-norm"), "adgm", 100, 0, None)
    assert meta["recipe"] == ss.ADGM_RECIPE["bf16"] + "-bn" and out.name.endswith("-bn")
    assert cfg.model.extra["batch_norm"] is True and not ss.current(meta)
    _, _, plain, _ = ss.cell_plan(args(tmp_path, "--models", "adgm"), "adgm", 100, 0, None)
    assert "batch_norm" not in plain.model.extra
    with pytest.raises(SystemExit):
        args(tmp_path, "--models", "m2,adgm", "--batch-norm")
    assert "--batch-norm is the ADGM's" in capsys.readouterr().err
