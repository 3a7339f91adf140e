"""Tables (`csv:FILE`): column kinds inferred and overridden, the encoding and its round trip to the user's
units, missing cells refused or masked, and the mixed likelihood: the sum of torch.distributions' log-densities
of the observed columns, normalised, sampled at its probabilities; a VAE trained on a real table (scikit-learn's
diabetes data, a binary sex column beside continuous ones) gets IS >= ELBO and the figures of a table."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_diabetes
from torch.distributions import Bernoulli, Categorical, Normal

from vaelab.data.tables import Column, TableSchema, infer_schema, table_schema, table_splits
from vaelab.distributions.likelihoods import build_likelihood
from vaelab.errors import DataError

torch.set_num_threads(1)


def _schema() -> TableSchema:
    """Two continuous columns (user units with a mean and sd), a binary and a three-level categorical one."""
    return TableSchema(
        (
            Column("age", "continuous", (), 50.0, 12.0),
            Column("sex", "binary", ("F", "M")),
            Column("grade", "categorical", ("a", "b", "c")),
            Column("bmi", "continuous", (), 26.0, 4.0),
        )
    )


def _frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(50, 12, n).round(1),
            "sex": rng.choice(["F", "M"], n),
            "grade": rng.choice(["a", "b", "c"], n),
            "bmi": rng.normal(26, 4, n).round(2),
        }
    )


def _likelihood(schema: TableSchema):
    return build_likelihood(
        "mixed", schema.datum_shape(), gaussian_variance="per-pixel", table=schema.model_table()
    ).double()


def test_mixed_log_prob_is_the_sum_of_the_observed_columns_torch_log_probs():
    """log p(x|z) = sum over observed columns of Normal (user units), Bernoulli and Categorical log_prob."""
    schema = _schema()
    lik = _likelihood(schema)
    with torch.no_grad():
        lik.raw.copy_(torch.randn(schema.width, dtype=torch.float64))
    frame = _frame(12)
    frame.loc[3, "age"] = np.nan
    frame.loc[5, "grade"] = np.nan
    frame.loc[7, "sex"] = np.nan
    x = schema.encode(frame, missing="mask").double()
    out = torch.randn(3, 12, 2, 1, schema.width, dtype=torch.float64)  # K=3 draws of z per row
    got = lik(out).log_prob(x)
    var = lik.floor + torch.nn.functional.softplus(lik.raw)
    want = torch.zeros(3, 12, dtype=torch.float64)
    for i in range(12):
        for c, at in zip(schema.columns, (0, 1, 2, 5)):
            cell = frame[c.name][i]
            if pd.isna(cell):
                continue
            p = out[:, i, 0, 0]
            if c.kind == "continuous":  # the cell as stored (float32, standardised), in the user's units
                d = Normal(c.mean + c.sd * p[:, at], c.sd * var[at].sqrt())
                want[:, i] += d.log_prob(c.mean + c.sd * x[i, 0, 0, at])
            elif c.kind == "binary":
                want[:, i] += Bernoulli(logits=p[:, at]).log_prob(
                    torch.tensor(float(c.levels.index(cell)), dtype=p.dtype)
                )
            else:
                want[:, i] += Categorical(logits=p[:, at : at + 3]).log_prob(
                    torch.tensor(c.levels.index(cell))
                )
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-10)


def test_mixed_likelihood_is_normalised():
    """Summed over every value of the discrete columns and integrated over the continuous one (user units),
    p(x|z) is 1: no normalising constant is dropped (the standardisation's Jacobian included)."""
    schema = TableSchema(
        (
            Column("sex", "binary", (0, 1)),
            Column("grade", "categorical", ("a", "b", "c")),
            Column("w", "continuous", (), 70.0, 9.0),
        )
    )
    lik = _likelihood(schema)
    out = torch.randn(1, 2, 1, schema.width, dtype=torch.float64)
    dist = lik(out)
    grid = torch.linspace(-12, 12, 4001, dtype=torch.float64)  # standardised values of w
    user_step = float(grid[1] - grid[0]) * 9.0
    total = 0.0
    for sex, grade in itertools.product((0, 1), range(3)):
        rows = torch.zeros(len(grid), 2, 1, schema.width, dtype=torch.float64)
        rows[:, 1] = 1.0
        rows[:, 0, 0, 0] = sex
        rows[:, 0, 0, 1 + grade] = 1.0
        rows[:, 0, 0, 4] = grid
        total += float(dist.log_prob(rows).detach().exp().sum()) * user_step
    assert total == pytest.approx(1.0, abs=1e-6)


def test_mixed_samples_follow_its_probabilities(gen):
    """Draws: Bernoulli and Categorical frequencies and the Normal's mean and sd within 5 standard errors."""
    schema = _schema()
    lik = _likelihood(schema)
    out = torch.tensor([[[[0.3, 1.2, -0.5, 0.0, 0.7, -1.0]], [[0.0] * 6]]], dtype=torch.float64)
    dist = lik(out[0])
    n = 20000
    x = dist.sample_with((n,), gen)[:, 0, 0]
    assert x.shape == (n, 6)
    p = torch.sigmoid(torch.tensor(1.2)).item()
    assert abs(x[:, 1].mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    probs = torch.softmax(torch.tensor([-0.5, 0.0, 0.7]), 0)
    freq = x[:, 2:5].mean(0)
    assert torch.all((freq - probs).abs() < 5 * (probs * (1 - probs) / n).sqrt())
    assert torch.all(x[:, 2:5].sum(1) == 1)
    sd = dist.scale[0].item()
    assert abs(x[:, 0].mean().item() - 0.3) < 5 * sd / math.sqrt(n)
    assert x[:, 0].std().item() == pytest.approx(sd, rel=0.03)


def test_encoding_round_trips_to_the_users_units():
    schema = _schema()
    frame = _frame(30)
    back = schema.to_frame(schema.encode(frame))
    np.testing.assert_allclose(back["age"], frame["age"], rtol=1e-5)
    np.testing.assert_allclose(back["bmi"], frame["bmi"], rtol=1e-5)
    assert list(back["sex"]) == list(frame["sex"]) and list(back["grade"]) == list(frame["grade"])


def _diabetes_csv(tmp_path, edit: dict | None = None) -> str:
    frame = load_diabetes(scaled=False, as_frame=True).frame
    for (row, col), v in (edit or {}).items():
        frame.loc[row, col] = v
    path = tmp_path / "diabetes.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_diabetes_kinds_and_statistics_from_the_training_rows(tmp_path):
    """sex (1/2) is binary, the rest continuous, standardised by the training rows' mean and sd."""
    path = _diabetes_csv(tmp_path)
    s = table_splits("csv", path)
    kinds = {c.name: c.kind for c in s.train.table.columns}
    assert kinds["sex"] == "binary" and s.train.table.columns[1].levels == (1.0, 2.0)
    assert {k for n, k in kinds.items() if n != "sex"} == {"continuous"}
    assert len(s.train) + len(s.test) == 442 and len(s.test) == 44
    frame = pd.read_csv(path)
    train_rows = s.train.table.to_frame(s.train.images)
    age = s.train.table.columns[0]
    assert age.mean == pytest.approx(train_rows["age"].mean(), rel=1e-6)
    assert age.sd == pytest.approx(train_rows["age"].std(ddof=0), rel=1e-5)
    values = s.train.images[:, 0, 0, 0]  # standardised age of the training rows
    assert abs(values.mean().item()) < 1e-5 and values.std(unbiased=False).item() == pytest.approx(
        1, rel=1e-4
    )
    assert sorted(pd.concat([train_rows, s.test.table.to_frame(s.test.images)])["age"].round(3)) == sorted(
        frame["age"].round(3)
    )


def test_kinds_are_overridden_and_checked(tmp_path):
    path = _diabetes_csv(tmp_path)
    s = table_splits("csv", path, kinds={"s4": "categorical", "target": "drop"})
    cols = {c.name: c for c in s.train.table.columns}
    assert "target" not in cols and cols["s4"].kind == "categorical"
    assert s.train.shape[2] == sum(c.width for c in cols.values())
    with pytest.raises(DataError, match=r"data.columns names 'agee'; csv:.*diabetes.csv has: age, sex"):
        table_splits("csv", path, kinds={"agee": "continuous"})
    with pytest.raises(DataError, match=r"column 'age' set binary has 58 values"):
        table_splits("csv", path, kinds={"age": "binary"})
    with pytest.raises(Exception, match="unknown column kind 'numeric'; choose one of: continuous, binary"):
        table_splits("csv", path, kinds={"age": "numeric"})


def test_missing_cells_are_refused_with_row_and_column_or_masked(tmp_path):
    path = _diabetes_csv(tmp_path, {(16, "bmi"): np.nan, (20, "s3"): np.nan})
    with pytest.raises(DataError) as e:
        table_splits("csv", path)
    msg = str(e.value)
    assert "row 17 (line 18), column 'bmi' is empty (and 1 more missing cell)" in msg
    assert "--set data.missing=mask" in msg and "\n" not in msg
    s = table_splits("csv", path, missing="mask")
    rows = torch.cat([s.train.images, s.test.images])
    assert int((rows[:, 1, 0] == 0).sum()) == 2  # exactly the two cells are masked
    # the masked cell contributes nothing: the likelihood of a row does not depend on the value stored there
    lik = build_likelihood("mixed", s.train.shape, table=s.train.table.model_table())
    r = rows[(rows[:, 1, 0] == 0).any(1)][:1].clone()
    out = torch.randn(2, 1, s.train.shape[2])
    before = lik(out).log_prob(r)
    r[:, 0, 0][r[:, 1, 0] == 0] = 123.0
    torch.testing.assert_close(lik(out).log_prob(r), before)


def test_a_text_column_of_10000_levels_is_one_line(tmp_path):
    n = 10000
    frame = pd.DataFrame({"name": [f"user{i:05d}" for i in range(n)], "x": np.arange(n) % 7 * 1.5})
    path = tmp_path / "people.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as e:
        table_splits("csv", str(path))
    msg = str(e.value)
    assert "column 'name' is text with 10,000 distinct values, more than the 100 levels" in msg
    assert "--set data.columns.name=drop" in msg and "\n" not in msg


def test_a_saved_encoding_reads_the_file_as_training_did(tmp_path):
    """Evaluation reads the file with the run's data.table: same levels and statistics; a level the run never
    saw is named with its row."""
    path = _diabetes_csv(tmp_path)
    s = table_splits("csv", path)
    saved = json.loads(json.dumps(s.train.table.to_dict()))
    again = table_splits("csv", path, saved=saved)
    torch.testing.assert_close(again.test.images, s.test.images)
    assert table_schema({"data": {"name": "csv:x", "table": saved}}).columns == s.train.table.columns
    frame = pd.read_csv(path)
    frame.loc[9, "sex"] = 3.0
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row 10, column 'sex' holds 3.0, not one of its 2 levels"):
        table_splits("csv", path, saved=saved)


def test_infer_needs_two_values(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 1.0, 1.0], "b": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError, match=r"column 'a' holds one value \(1.0\) in every row"):
        infer_schema(frame, {}, np.arange(3), "t.csv")


def test_a_vae_on_the_diabetes_table_has_is_above_elbo_and_table_figures(tmp_path, capsys):
    """Trained on the real table: importance sampling's log p(x) is at least the ELBO on average (over the
    same draws, K = 200, every test row), AIS lands within a few nats of IS, the image figures are one line,
    columns and marginals are drawn, and the model's rows map back to the user's units."""
    import vaelab
    from vaelab.cli import main

    path = _diabetes_csv(tmp_path)
    run = tmp_path / "run"
    args = ["train", "--data", f"csv:{path}", "--binarize", "none", "--likelihood", "mixed", "--hidden", "32"]
    args += [
        "--latent-dim",
        "3",
        "--epochs",
        "30",
        "--quiet",
        "--threads",
        "1",
        "--seed",
        "0",
        "--out",
        str(run),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "not drawn (a table's rows are not pictures" in out and "samples, reconstructions, manifold" in out
    assert (run / "figures" / "columns.png").is_file() and (run / "figures" / "marginals.png").is_file()
    ev = vaelab.evaluate(str(run), importance=200, ais=30, chains=2, limit=20, seed=0)
    assert ev["importance"]["log_px"] >= ev["elbo"]["estimate"]
    assert abs(ev["ais"]["log_px"] - ev["importance"]["log_px"]) < 3.0
    model = vaelab.load(str(run))
    schema = table_schema(run)
    rows = schema.to_frame(model.decode(torch.zeros(5, 3)).mean)
    assert list(rows.columns) == list(pd.read_csv(path).columns)
    assert set(rows["sex"]) <= {1.0, 2.0} and rows["age"].between(15, 85).all()


def test_a_text_column_of_10000_levels_is_exit_1_through_the_cli(tmp_path, capsys, one_line_error):
    from vaelab.cli import main

    n = 10000
    pd.DataFrame({"name": [f"user{i:05d}" for i in range(n)], "x": np.arange(n) % 7 * 1.5}).to_csv(
        tmp_path / "people.csv", index=False
    )
    args = [
        "train",
        "--data",
        f"csv:{tmp_path / 'people.csv'}",
        "--binarize",
        "none",
        "--likelihood",
        "mixed",
    ]
    code = main([*args, "--epochs", "1", "--quiet", "--threads", "1", "--out", str(tmp_path / "run")])
    one_line_error(
        capsys, code, "column 'name' is text with 10,000 distinct values", "data.columns.name=drop"
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


# --- the table layout reaches the likelihood through the config; a table's defaults; bits/dim per column ---


def _mixed_of(model):
    from vaelab.distributions.mixed import MixedLikelihood

    (lik,) = [m for m in model.modules() if isinstance(m, MixedLikelihood)]
    return lik


@pytest.mark.parametrize("name", ["vae", "iwae", "vampprior", "hierarchical", "autoencoder"])
def test_every_model_that_takes_a_likelihood_builds_mixed_from_model_table(tmp_path, name):
    """model.table (what training writes from data.table) is the only way in: built from the config alone, the
    likelihood has the table's kinds, columns and sds, before any weights are loaded."""
    from vaelab.config import Config
    from vaelab.distributions import mixed
    from vaelab.models.registry import build_model

    path = tmp_path / "t.csv"
    _frame(60).to_csv(path, index=False)
    s = table_splits("csv", str(path))
    schema = s.train.table
    table = json.loads(json.dumps(schema.model_table()))  # as config.json holds it
    cfg = Config().replace(
        **{"model.name": name, "model.likelihood": "mixed", "model.table": table, "model.hidden": (8,)}
    )
    lik = _mixed_of(build_model(cfg.model, s.train.shape))
    layout = schema.layout()
    assert bool(lik.ready) and lik.kind.tolist() == list(layout.kinds) == [0, 1, 2, 2, 2, 0]
    assert lik.column.tolist() == [0, 1, 2, 2, 2, 3]
    sd = {c.name: c.sd for c in schema.columns}
    assert lik.sd.tolist() == [sd["age"], 1.0, 1.0, 1.0, 1.0, sd["bmi"]]
    assert not hasattr(mixed, "expect_layout")  # no hidden channel left


def test_a_table_layout_that_does_not_fit_is_one_line():
    from vaelab.config import ModelConfig
    from vaelab.errors import ConfigError
    from vaelab.models.registry import build_model

    table = _schema().model_table()
    with pytest.raises(ConfigError, match="model.table lays out 6 slots, the rows have 7"):
        build_likelihood("mixed", (2, 1, 7), table=table)
    with pytest.raises(ConfigError, match=r"model.table is not a table's layout \(KeyError: 'kind'\)"):
        build_likelihood("mixed", (2, 1, 1), table={"columns": [{"width": 1}]})
    no_layout = build_likelihood("mixed", (2, 1, 6))  # a run saved before model.table: its weights bring it
    with pytest.raises(ConfigError, match="it needs their layout, model.table"):
        no_layout(torch.zeros(1, 2, 1, 6))
    cfg = ModelConfig(name="linear-gaussian", likelihood="mixed", table=table)
    with pytest.raises(ConfigError, match="model 'linear-gaussian' has its own p\\(x\\|z\\)"):
        build_model(cfg, (2, 1, 6))


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A VAE trained by the CLI on a 4-column table (W = 6 slots) with neither --binarize nor --likelihood."""
    from vaelab.cli import main

    root = tmp_path_factory.mktemp("table")
    path = root / "people.csv"
    _frame(300, seed=1).to_csv(path, index=False)
    run = root / "run"
    args = ["train", "--data", f"csv:{path}", "--hidden", "16", "--latent-dim", "2", "--epochs", "3"]
    assert main([*args, "--quiet", "--threads", "1", "--no-figures", "--out", str(run)]) == 0
    return run, path


def test_a_table_defaults_to_binarize_none_and_likelihood_mixed(table_run):
    run, _ = table_run
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["binarize"] == "none" and cfg["model"]["likelihood"] == "mixed"
    schema = table_schema(run)
    assert cfg["model"]["table"] == schema.model_table()
    assert [c["width"] for c in cfg["model"]["table"]["columns"]] == [1, 1, 3, 1]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--likelihood", "bernoulli"], "by the likelihood mixed; leave --likelihood (model.likelihood) out"),
        (["--binarize", "dynamic"], "not grey levels to binarize; leave --binarize (data.binarize) out"),
    ],
)
def test_a_conflicting_choice_on_a_table_is_one_line(tmp_path, capsys, one_line_error, flags, says):
    from vaelab.cli import main

    path = tmp_path / "t.csv"
    _frame(40).to_csv(path, index=False)
    code = main(
        ["train", "--data", f"csv:{path}", *flags, "--epochs", "0", "--quiet", "--out", str(tmp_path / "r")]
    )
    one_line_error(capsys, code, f"csv:{path} is a table: ", says)
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_python_tables_take_the_defaults_too(tmp_path):
    """vaelab.train(cfg, data=frame): a config keeping the defaults' values gets a table's; a value changed
    from the default that conflicts is refused."""
    import vaelab
    from vaelab.config import Config

    cfg = Config().replace(
        **{"model.hidden": (8,), "model.latent_dim": 2, "train.epochs": 1, "train.progress": False}
    )
    result = vaelab.train(cfg, data=_frame(60))
    assert result.config.data.binarize == "none" and result.config.model.likelihood == "mixed"
    assert result.config.model.table["columns"][2] == {
        "kind": "categorical",
        "width": 3,
        "mean": 0.0,
        "sd": 1.0,
    }
    with pytest.raises(DataError, match="is a table: its rows are modelled column by column"):
        vaelab.train(cfg.replace(**{"model.likelihood": "gaussian"}), data=_frame(60))


def test_a_table_run_loads_from_its_checkpoint_an_old_checkpoint_and_a_safetensors_folder(
    table_run, tmp_path
):
    """The same log p(x|z) from the run, from a checkpoint whose config predates model.table (the layout then
    comes with the weights), and from `vaelab export --format safetensors` read back by vaelab.load(DIR)."""
    import vaelab
    from vaelab.cli import main
    from vaelab.train.checkpoint import model_from_checkpoint, read_checkpoint

    run, path = table_run
    model = vaelab.load(run)
    rows = table_splits("csv", str(path), saved=table_schema(run).to_dict()).test.images
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    want = model.decode(z[:, None]).log_prob(rows[None, :8])  # [4, 8]
    ck = read_checkpoint(run / "checkpoints" / "best.pt")
    ck["config"]["model"].pop("table")
    old = model_from_checkpoint(ck)
    assert bool(old.likelihood.ready)
    torch.testing.assert_close(old.decode(z[:, None]).log_prob(rows[None, :8]), want, rtol=0, atol=0)
    out = tmp_path / "weights"
    assert main(["export", str(run), "--format", "safetensors", "--out", str(out)]) == 0
    exported = vaelab.load(out)
    assert json.loads((out / "config.json").read_text())["model"]["table"] == table_schema(run).model_table()
    torch.testing.assert_close(exported.decode(z[:, None]).log_prob(rows[None, :8]), want, rtol=0, atol=0)


def test_bits_per_dim_of_a_table_counts_its_columns(table_run):
    """4 columns, not the 2 x 6 numbers of an encoded row: bits/dim = NLL / (4 ln 2), for each estimator."""
    import vaelab

    run, _ = table_run
    ev = vaelab.evaluate(str(run), importance=20, limit=30, seed=0, progress=False)
    for block, key in (("elbo", "estimate"), ("importance", "log_px")):
        assert ev[block]["bits_per_dim"] == pytest.approx(-ev[block][key] / (4 * math.log(2)), rel=1e-12)


def test_parquet_reads_as_the_same_csv_table(tmp_path):
    """A real Parquet round trip (pyarrow): the same kinds, levels, statistics and encoded rows as the CSV of
    the same frame; without pyarrow the message names the extra."""
    pytest.importorskip("pyarrow")
    frame = _frame(80, seed=3)
    frame.loc[5, "bmi"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(back, frame)
    a = table_splits("parquet", str(tmp_path / "t.parquet"), missing="mask")
    b = table_splits("csv", str(tmp_path / "t.csv"), missing="mask")
    assert a.train.table.columns == b.train.table.columns
    torch.testing.assert_close(a.train.images, b.train.images, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.test.images, b.test.images, rtol=0, atol=1e-6)
    rows = torch.cat([a.train.images, a.test.images])
    assert int((rows[:, 1, 0] == 0).sum()) == 1  # the one empty bmi cell, masked


# --- bad cells: an infinite number, a stray word in a column of numbers; `vaelab data info` on a table ---


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_an_infinite_cell_is_refused_with_its_row_and_column(tmp_path, bad):
    """inf is no value a Normal models: refused naming the file, row (and line) and column, never dropped from
    the statistics and kept in the data; an empty cell is still 'empty'."""
    path = _diabetes_csv(tmp_path, {(16, "bmi"): bad, (30, "bmi"): bad})
    with pytest.raises(DataError) as e:
        table_splits("csv", path)
    msg = str(e.value)
    assert msg.startswith(f"csv:{path}: row 17 (line 18), column 'bmi' holds {bad:g}, not a finite number")
    assert "(and 1 more infinite cell)" in msg and "\n" not in msg
    # data.missing=mask masks empty cells, not infinite ones
    with pytest.raises(DataError, match=r"row 17 \(line 18\), column 'bmi' holds"):
        table_splits("csv", path, missing="mask")
    empty = _diabetes_csv(tmp_path, {(16, "bmi"): np.nan})
    with pytest.raises(DataError, match=r"row 17 \(line 18\), column 'bmi' is empty"):
        table_splits("csv", empty)


def test_a_two_valued_column_with_inf_is_refused_not_read_as_binary(tmp_path):
    """{0, inf} has two values, so it was a Bernoulli over 0 and inf; an explicit kind still decides."""
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [np.inf, 0.0, np.inf, 0.0]})
    with pytest.raises(
        DataError, match=r"^t.csv: row 1 \(line 2\), column 'b' holds inf, not a finite number \(and 1 "
    ):
        infer_schema(frame, {}, np.arange(4), "t.csv")
    chosen = infer_schema(frame, {"b": "categorical"}, np.arange(4), "t.csv").columns[1]
    assert (chosen.kind, chosen.levels) == ("categorical", (0.0, np.inf))


def test_a_column_whose_sd_overflows_is_named_for_that(tmp_path):
    """Values near float64's largest: the sd overflowed and the line said the column "takes one value"."""
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [1e308, -1e308, 1e308, 5.0]})
    with pytest.raises(DataError) as e:
        infer_schema(frame, {}, np.arange(4), "t.csv")
    assert str(e.value) == (
        "t.csv: column 'b' spans values too large to standardise (its sd overflows float64, largest 1e+308): "
        "rescale it, or drop it: --set data.columns.b=drop"
    )


def test_an_infinite_cell_is_refused_when_read_with_a_saved_encoding(tmp_path):
    path = _diabetes_csv(tmp_path)
    saved = table_splits("csv", path).train.table.to_dict()
    path = _diabetes_csv(tmp_path, {(9, "s1"): np.inf})
    with pytest.raises(DataError, match=r"row 10 \(line 11\), column 's1' holds inf, not a finite number"):
        table_splits("csv", path, saved=saved)


def test_an_infinite_cell_is_exit_1_through_the_cli_and_trains_nothing(tmp_path, capsys, one_line_error):
    from vaelab.cli import main

    frame = _frame(40)
    frame.loc[5, "bmi"] = np.inf
    frame.to_csv(tmp_path / "t.csv", index=False)
    run = tmp_path / "run"
    code = main(
        ["train", "--data", f"csv:{tmp_path / 't.csv'}", "--epochs", "1", "--quiet", "--out", str(run)]
    )
    one_line_error(capsys, code, f"csv:{tmp_path / 't.csv'}: row 6 (line 7), column 'bmi' holds inf")
    assert not (run / "checkpoints").exists()


def test_a_stray_word_in_a_column_of_numbers_is_named(tmp_path):
    """A column of numbers with a typo is refused naming the cell, not read as a categorical with a level per
    number; set categorical, it is one."""
    frame = _frame(40)
    frame["age"] = frame["age"].astype(object)
    frame.loc[7, "age"] = "oops"
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as e:
        table_splits("csv", str(path))
    msg = str(e.value)
    assert msg.startswith(f"csv:{path}: row 8, column 'age' holds 'oops', not a number")
    assert "--set data.columns.age=categorical" in msg and "\n" not in msg
    s = table_splits("csv", str(path), kinds={"age": "categorical"})
    assert {c.name: c.kind for c in s.train.table.columns}["age"] == "categorical"


@pytest.mark.parametrize(
    ("stray", "refused"),
    [
        (1, True),
        (10, True),  # 1% of 1000 cells
        (11, False),  # more than 1% (and more than 3): the words are levels
    ],
)
def test_the_stray_word_rule(stray, refused):
    """Scores 1..10 over 1000 rows with `stray` words: a few words (at most 3, or 1%) are typos, more are
    levels of a categorical column."""
    scores = [str(i % 10 + 1) for i in range(1000)]
    for i in range(stray):
        scores[50 * i + 3] = "oops"
    frame = pd.DataFrame({"score": scores, "x": np.arange(1000) * 0.5})
    if refused:
        with pytest.raises(DataError, match=r"t.csv: row 4, column 'score' holds 'oops', not a number"):
            infer_schema(frame, {}, np.arange(1000), "t.csv")
    else:
        (score, _) = infer_schema(frame, {}, np.arange(1000), "t.csv").columns
        assert score.kind == "categorical" and len(score.levels) == 11


def test_text_columns_with_some_numbers_stay_categorical():
    """Levels that happen to be numbers beside words (floors 1..3, G, B) are a categorical column, as is a
    small table's column where one cell in three is a word."""
    frame = pd.DataFrame(
        {
            "floor": ["1", "2", "3", "G", "B"] * 20,
            "grade": ["a", "b", "c", "1"] * 25,
            "x": np.arange(100) * 0.5,
        }
    )
    cols = infer_schema(frame, {}, np.arange(100), "t.csv").columns
    assert [(c.name, c.kind) for c in cols] == [
        ("floor", "categorical"),
        ("grade", "categorical"),
        ("x", "continuous"),
    ]
    assert infer_schema(frame.iloc[:3], {}, np.arange(3), "t.csv").columns[0].kind == "categorical"


def test_data_info_reads_a_table(tmp_path, capsys):
    """`vaelab data info csv:FILE` loads the table with a table's defaults (binarize none): its rows and
    columns per split."""
    from vaelab.cli import main

    _frame(40).to_csv(tmp_path / "t.csv", index=False)
    assert main(["data", "info", f"csv:{tmp_path / 't.csv'}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "train     36 rows of 4 columns (6 slots encoded)",
        "test       4 rows of 4 columns (6 slots encoded)",
    ]
