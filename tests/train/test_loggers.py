"""--log tensorboard and --log mlflow, read back with each tool's own reader (TensorBoard's EventAccumulator,
MlflowClient on the run's SQLite store): the same numbers as metrics.jsonl, the sample grid of the saved
model, per-dimension KL histograms summing to the split's KL, a resume that appends, an --overwrite that starts
clean, a missing extra in one line; and the training progress bar on a terminal."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main
from vaelab.config import build_config
from vaelab.errors import ConfigError
from vaelab.runs import RunDir
from vaelab.train import read_checkpoint, train
from vaelab.train.checkpoint import model_from_checkpoint
from vaelab.train.loggers import mlflow_paths, sample_grid, scalars, tb_dir

from vaelab_testing import TINY_TRAIN, small_config

ea_module = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
mlflow = pytest.importorskip("mlflow")

# mlflow-skinny 3.18 with SQLAlchemy 2.1: "The noload loader strategy is deprecated", MLflow's to answer
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

LOGS = {"train.log": ("tensorboard", "mlflow"), "model.latent_dim": 3, "data.valid_fraction": 0.2}


@pytest.fixture(scope="module", autouse=True)
def _no_telemetry():
    """MLflow sends no usage events from the tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Path:
    """A run logged to both tools: 1 epoch, then resumed to 3 with a config that does not name the loggers
    (the saved config's train.log carries on)."""
    out = tmp_path_factory.mktemp("logged") / "run"
    train(small_config(**LOGS, **{"train.epochs": 1}), out=out)
    train(small_config(**{"train.epochs": 3}), out=out, resume=True, explicit={"train.epochs"})
    return out


def accumulator(folder: Path):
    ea = ea_module.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    return ea.Reload()


def client_and_run(run: Path):
    known = json.loads(mlflow_paths(RunDir(run))[2].read_text())
    client = mlflow.MlflowClient(known["tracking_uri"])
    return client, client.get_run(known["run_id"])


def test_tensorboard_scalars_are_metrics_jsonl_in_float32(logged):
    rows = RunDir(logged).read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    ea = accumulator(tb_dir(RunDir(logged)))
    expected = {k for r in rows for k in scalars(r)}
    assert set(ea.Tags()["scalars"]) == expected and "test_elbo" in expected and "valid_kl" in expected
    for key in expected:
        got = [(e.step, e.value) for e in ea.Scalars(key)]
        want = [(r["epoch"], float(np.float32(r[key]))) for r in rows if r.get(key) is not None]
        assert got == want, key


def test_tensorboard_resume_appends_a_file_and_repeats_no_epoch(logged):
    """Every event file read raw (no purging): each (tag, step) once, the resume in a second file."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    files = sorted(tb_dir(RunDir(logged)).glob("events.out.tfevents.*"))
    assert len(files) == 2
    seen = []
    for f in files:
        for event in EventFileLoader(str(f)).Load():
            seen += [(v.tag, event.step) for v in event.summary.value]
    assert len(seen) == len(set(seen))
    assert sorted(s for t, s in seen if t == "test_elbo") == [1, 2, 3]


def test_tensorboard_sample_grid_is_the_saved_models_samples(logged):
    run = RunDir(logged)
    images = accumulator(tb_dir(run)).Images("samples")
    assert [e.step for e in images] == [1, 2, 3]
    png = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)))
    assert png.shape == (8 * 8, 8 * 8, 3)  # 64 samples of 8x8 digits, 8 per row, grey as RGB
    ck = read_checkpoint(run.last)
    model = model_from_checkpoint(ck, run.last).eval()
    draws = sample_grid(model, 64, ck["config"]["train"]["eval_seed"]).numpy()  # the last epoch's model
    pixels = (draws[:, 0] * np.float32(255)).clip(0, 255).astype(np.uint8)  # TensorBoard's conversion
    grid = pixels.reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(64, 64)
    assert np.array_equal(png[..., 0], grid) and np.array_equal(png[..., 1], grid)
    assert 0 < grid.mean() < 255


def test_kl_histograms_sum_to_the_splits_kl(logged):
    """One value per latent dimension; the analytic KL splits over dimensions, so they sum to metrics.jsonl's
    {split}_kl (mean over the split of the summed KL)."""
    rows = {r["epoch"]: r for r in RunDir(logged).read_metrics()}
    ea = accumulator(tb_dir(RunDir(logged)))
    assert sorted(ea.Tags()["histograms"]) == ["kl_per_dim/test", "kl_per_dim/valid"]
    for split in ("test", "valid"):
        events = ea.Histograms(f"kl_per_dim/{split}")
        assert [e.step for e in events] == [1, 2, 3]
        for e in events:
            h = e.histogram_value
            assert h.num == 3 and h.min >= 0
            assert h.sum == pytest.approx(rows[e.step][f"{split}_kl"], rel=1e-5, abs=1e-7)


def test_a_table_gets_kl_histograms_and_no_sample_grid(tmp_path):
    """A DataFrame run (mixed likelihood): no picture of a row, the KL histograms all the same."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(scaled=False, as_frame=True).frame
    table = {"data.binarize": "none", "model.likelihood": "mixed", "model.latent_dim": 4}
    cfg = small_config(**table, **{"train.log": ("tensorboard",)})
    result = train(cfg, out=tmp_path / "run", data=frame)
    ea = accumulator(tb_dir(RunDir(tmp_path / "run")))
    assert ea.Tags()["images"] == []
    h = ea.Histograms("kl_per_dim/test")[-1].histogram_value
    assert h.num == 4 and h.sum == pytest.approx(result.history[-1]["test_kl"], rel=1e-5)


def test_logging_changes_no_number(logged):
    """Sampling and the KL histograms draw from their own generators: the run trains to the same numbers."""
    plain = train(small_config(**{**LOGS, "train.log": (), "train.epochs": 3})).history
    for a, b in zip(RunDir(logged).read_metrics(), plain, strict=True):
        for key in a.keys() - {"seconds", "samples_per_s"}:
            assert a[key] == b[key], key


def test_mlflow_params_metrics_and_artifacts_are_the_runs(logged, tmp_path):
    run = RunDir(logged)
    client, mlrun = client_and_run(logged)
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == "run"
    config = json.loads(run.config.read_text())
    assert mlrun.data.params["train.log"] == '["tensorboard", "mlflow"]'
    assert mlrun.data.params["model.latent_dim"] == "3"
    assert len(mlrun.data.params) == sum(len(part) for part in config.values())
    rows = run.read_metrics()
    for key in {k for r in rows for k in scalars(r)}:
        got = [(m.step, m.value) for m in client.get_metric_history(mlrun.info.run_id, key)]
        assert sorted(got) == [(r["epoch"], r[key]) for r in rows if r.get(key) is not None], key
    for name in ("metrics.jsonl", "config.json"):
        local = client.download_artifacts(mlrun.info.run_id, name, str(tmp_path))
        assert Path(local).read_bytes() == (run.root / name).read_bytes()
    exp = client.get_experiment(mlrun.info.experiment_id)
    assert exp.artifact_location == mlflow_paths(run)[1].absolute().as_uri()  # inside the run folder
    assert len(client.search_runs([exp.experiment_id])) == 1  # the resume reopened the same MLflow run


def test_overwrite_starts_clean_in_both_tools(logged, tmp_path):
    """Another run folder logging to the first run's store (train.mlflow_uri): --overwrite removes its old
    event files and deletes its old MLflow run."""
    uri = json.loads(mlflow_paths(RunDir(logged))[2].read_text())["tracking_uri"]
    out = tmp_path / "other"
    cfg = small_config(**{**LOGS, "train.mlflow_uri": uri, "train.epochs": 2})
    train(cfg, out=out)
    _, first = client_and_run(out)
    train(cfg.replace(**{"train.epochs": 1}), out=out, overwrite=True)
    client, second = client_and_run(out)
    assert second.info.run_id != first.info.run_id
    assert client.get_run(first.info.run_id).info.lifecycle_stage == "deleted"
    assert [m.step for m in client.get_metric_history(second.info.run_id, "test_elbo")] == [1]
    assert [e.step for e in accumulator(tb_dir(RunDir(out))).Scalars("test_elbo")] == [1]
    assert not (out / "mlflow.db").exists()  # the store named by train.mlflow_uri is used, none made here


def test_a_restart_after_a_nan_continues_the_logs(logged, tmp_path, monkeypatch, capsys):
    """train.on_diverge=restart goes back to the last checkpoint: the loggers start again from there, and
    each epoch is logged once, with the numbers metrics.jsonl ends with."""
    from vaelab.objectives import elbo as elbo_module

    calls, original = {"n": 0}, elbo_module.OBJECTIVES["elbo"]

    def poisoned(model, x, cfg, beta, gen, **kw):
        calls["n"] += 1
        step = original(model, x, cfg, beta, gen, **kw)
        return step._replace(loss=step.loss * float("nan")) if calls["n"] == 30 else step

    monkeypatch.setitem(elbo_module.OBJECTIVES, "elbo", poisoned)
    uri = json.loads(mlflow_paths(RunDir(logged))[2].read_text())["tracking_uri"]
    cfg = small_config(**{**LOGS, "train.mlflow_uri": uri, "train.epochs": 3, "train.on_diverge": "restart"})
    out = tmp_path / "run"
    train(cfg, out=out)
    assert "restart 1 of 3 from epoch 1" in capsys.readouterr().err
    rows = RunDir(out).read_metrics()
    want = [(r["epoch"], r["test_elbo"]) for r in rows]
    got = [(e.step, e.value) for e in accumulator(tb_dir(RunDir(out))).Scalars("test_elbo")]
    assert got == [(s, float(np.float32(v))) for s, v in want]
    client, mlrun = client_and_run(out)
    history = client.get_metric_history(mlrun.info.run_id, "test_elbo")
    assert sorted((m.step, m.value) for m in history) == want
    assert mlrun.info.status == "FINISHED"


@pytest.mark.slow
def test_under_nproc_2_rank_0_alone_logs(tmp_path):
    out = tmp_path / "run"
    args = [*TINY_TRAIN, "--epochs", "2", "--log", "tensorboard", "--nproc", "2", "--no-figures"]
    assert main(["train", *args, "--out", str(out)]) == 0
    assert len(list(tb_dir(RunDir(out)).glob("events.out.tfevents.*"))) == 1
    rows = RunDir(out).read_metrics()
    got = [(e.step, e.value) for e in accumulator(tb_dir(RunDir(out))).Scalars("test_elbo")]
    assert got == [(r["epoch"], float(np.float32(r["test_elbo"]))) for r in rows] and len(rows) == 2


@pytest.mark.parametrize(
    ("flag", "hidden", "needle"),
    [
        ("tensorboard", "tensorboard", "pip install 'vaelab[tensorboard]'"),
        ("mlflow", "mlflow", "pip install 'vaelab[mlflow]'"),
        ("mlflow", "sqlalchemy", "needs sqlalchemy, which is not installed: pip install 'vaelab[mlflow]'"),
    ],
)
def test_a_missing_extra_is_one_line_before_anything_is_written(
    flag, hidden, needle, monkeypatch, tmp_path, capsys, one_line_error
):
    monkeypatch.setitem(sys.modules, hidden, None)  # `import hidden` raises ImportError
    out = tmp_path / "run"
    code = main(["train", *TINY_TRAIN, "--log", flag, "--out", str(out)])
    one_line_error(capsys, code, f"--log {flag} needs", needle)
    assert not out.exists()


def test_an_unknown_logger_names_the_choices(tmp_path, capsys, one_line_error):
    code = main(["train", *TINY_TRAIN, "--log", "wandb", "--out", str(tmp_path / "run")])
    one_line_error(capsys, code, "unknown logger 'wandb'; choose one of: tensorboard, mlflow")


def test_a_negative_image_interval_is_one_line(tmp_path, capsys, one_line_error):
    args = ["--log", "tensorboard", "--set", "train.log_images_every=-1", "--out", str(tmp_path / "run")]
    code = main(["train", *TINY_TRAIN, *args])
    one_line_error(capsys, code, "train.log_images_every must be >= 0 (0: no sample grids), got -1")
    assert not (tmp_path / "run").exists()


def test_log_is_a_config_key_and_the_flag_may_be_given_twice(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  log: [tensorboard]\n")
    assert build_config(f).train.log == ("tensorboard",)
    assert build_config(None, {"train.log": "tensorboard,mlflow"}).train.log == ("tensorboard", "mlflow")
    with pytest.raises(ConfigError, match="needs a run folder"):
        train(small_config(**{"train.log": ("tensorboard",)}))


def test_the_cli_logs_both_and_sends_the_figures_to_mlflow(logged, tmp_path, capsys):
    out = tmp_path / "run"
    uri = json.loads(mlflow_paths(RunDir(logged))[2].read_text())["tracking_uri"]  # a store made already
    logs = ["--log", "tensorboard", "--log", "mlflow", "--set", f"train.mlflow_uri={uri}"]
    args = ["train", *TINY_TRAIN, *logs, "--out", str(out)]
    assert main(args) == 0
    assert "mlflow" not in capsys.readouterr().err.lower()  # MLflow's INFO lines stay quiet
    client, mlrun = client_and_run(out)
    assert json.loads((out / "config.json").read_text())["train"]["log"] == ["tensorboard", "mlflow"]
    figures = {a.path for a in client.list_artifacts(mlrun.info.run_id, "figures")}
    assert figures == {f"figures/{p.name}" for p in (out / "figures").glob("*.png")} and figures


def _stderr_on_a_pseudo_terminal(tmp_path: Path) -> str:
    """What `vaelab train` (2 epochs on 8x8 digits) writes to stderr when stderr is a pseudo-terminal."""
    flags = [a for a in TINY_TRAIN if a != "--quiet"]
    cmd = [sys.executable, "-m", "vaelab", "train", *flags, "--epochs", "2", "--no-figures"]
    cmd += ["--out", str(tmp_path / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    leader, follower = pty.openpty()
    size = struct.pack("HHHH", 40, 200, 0, 0)  # rows, columns: on 0 columns tqdm draws nothing
    fcntl.ioctl(follower, termios.TIOCSWINSZ, size)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 300)
        try:
            chunk = os.read(leader, 4096) if ready else b""
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode(errors="replace")


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("terminal", "quiet", "bar"), [(True, False, True), (False, False, False), (True, True, False)]
)
def test_the_training_bar_is_shown_on_a_terminal_without_quiet(
    terminal, quiet, bar, tmp_path, monkeypatch, capsys
):
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    flags = [a for a in TINY_TRAIN if a != "--quiet"] + ["--quiet"] * quiet
    assert main(["train", *flags, "--epochs", "2", "--no-figures", "--out", str(tmp_path / "run")]) == 0
    shown = err.getvalue()
    assert ("samples/s=" in shown and "loss=" in shown and "epoch 2/2" in shown) is bar, shown


@pytest.mark.slow
def test_training_shows_the_bar_on_a_real_pseudo_terminal(tmp_path):
    shown = _stderr_on_a_pseudo_terminal(tmp_path)
    assert "epoch 1/2" in shown and "loss=" in shown and "samples/s=" in shown


def test_scalars_are_the_records_numbers_as_json_keeps_them():
    record = {"epoch": 2, "step": 10, "lr": 1e-3, "samples_per_s": None, "test_kl": float("nan"), "ok": True}
    assert scalars(record) == {"step": 10.0, "lr": 1e-3}


def test_overwrite_without_loggers_leaves_none_of_the_old_logs(logged, tmp_path):
    """A run started again over a logged one with no --log: no event file or MLflow store of the old model stays."""
    out = tmp_path / "again"
    train(small_config(**LOGS, **{"train.epochs": 1}), out=out)
    run = RunDir(out)
    assert run.tb.is_dir() and run.mlflow_db.is_file() and run.mlflow_run.is_file()
    train(small_config(**{"train.epochs": 1}), out=out, overwrite=True)
    assert not run.tb.exists() and not run.mlflow_db.exists() and not run.mlflow_run.exists()
    assert not run.mlflow_artifacts.exists() and [r["epoch"] for r in run.read_metrics()] == [1]


def test_a_resume_may_start_logging(tmp_path):
    """train.log is a resumable change: a run trained without loggers logs the epochs it goes on with."""
    out = tmp_path / "late"
    train(small_config(**{"train.epochs": 1}), out=out)
    cfg = small_config(**{"train.epochs": 2, "train.log": ("tensorboard",)})
    train(cfg, out=out, resume=True, explicit={"train.epochs", "train.log"})
    assert [e.step for e in accumulator(RunDir(out).tb).Scalars("test_elbo")] == [2]


def test_mlflow_logs_a_run_given_as_a_relative_folder(tmp_path, monkeypatch):
    """`vaelab train --out run --log mlflow`: the default store's artifact location is a file URI of the
    absolute folder (Path.as_uri of the relative one raised ValueError, a traceback after training began)."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY_TRAIN, "--no-figures", "--log", "mlflow", "--out", "run"]) == 0
    client, mlrun = client_and_run(tmp_path / "run")
    exp = client.get_experiment(mlrun.info.experiment_id)
    assert exp.artifact_location == (tmp_path / "run" / "mlflow-artifacts").as_uri()


@pytest.mark.parametrize("content", [b'{"tracking', b"[1]", b"\xff\xfe"])
def test_an_unreadable_mlflow_json_is_one_line_on_resume(logged, tmp_path, capsys, one_line_error, content):
    """A resume must continue the MLflow run RUN/mlflow.json names: one it cannot read is one line naming the
    file and the way out (it was a JSONDecodeError or AttributeError traceback), and the run is left as it was."""
    out = tmp_path / "run"
    shutil.copytree(logged, out)
    ident = mlflow_paths(RunDir(out))[2]
    ident.write_bytes(content)
    before = (out / "metrics.jsonl").read_bytes()
    code = main(["train", "--out", str(out), "--resume", "--epochs", "4", "--quiet", "--no-figures"])
    one_line_error(capsys, code, f"{ident}: not the MLflow run this folder logs to", "remove it")
    assert (out / "metrics.jsonl").read_bytes() == before and ident.read_bytes() == content
