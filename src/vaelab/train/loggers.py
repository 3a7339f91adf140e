"""Follow a training in the tools people already use: TensorBoard and MLflow, beside `metrics.jsonl`.

The run folder stays the source of truth; a logger copies what the loop writes there. `train.log` names the
loggers (`--log tensorboard --log mlflow`); `open_loggers` checks each is installed before anything is
trained or written, and the loop calls the few hook points of `Loggers` on rank 0: `start` once the run
folder is ready (again after a restart), `epoch` after each epoch's checkpoint, and the end (the `with`
block's exit: finished, failed or killed). So an epoch is logged only once its checkpoint exists, and a resume
continues the logs where the checkpoint stands instead of logging an epoch twice.

- `tensorboard`: event files in `RUN/tb/`: every number of each epoch's record under its metrics.jsonl name
  (TensorBoard keeps float32), a grid of samples every `train.log_images_every` epochs (models that draw:
  a prior to decode or their own sampler), and a histogram of the per-dimension KL(q(z|x) || p(z)) on each
  evaluation split for one-layer Gaussian posteriors.
- `mlflow`: params (the flattened config), each record's numbers per epoch (step = epoch) and, at the end,
  metrics.jsonl and config.json (the figures after `vaelab train` draws them: `log_outputs`). The default
  store is `sqlite:///RUN/mlflow.db` with artifacts in `RUN/mlflow-artifacts/`: MLflow 3's file store
  (`./mlruns`) is in maintenance mode and refuses to open without MLFLOW_ALLOW_FILE_STORE=true.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from vaelab.config import Config
from vaelab.data import Prepared
from vaelab.errors import ConfigError
from vaelab.io import atomic_write_json
from vaelab.models.protocol import capabilities
from vaelab.registry import Registry
from vaelab.runs import RunDir

SAMPLES = 64  # images in a TensorBoard sample grid (8 x 8)
EXPERIMENT = "vaelab"  # the MLflow experiment runs are filed under


@dataclass
class Session:
    """What a logger is given when training starts: the run, its model and evaluation splits, and the epochs
    already trained (a resume's history; empty on a fresh start)."""

    run: RunDir
    config: Config
    model: nn.Module
    evals: Mapping[str, Prepared]
    history: list[dict[str, Any]] = field(default_factory=list)
    fresh: bool = True  # a new run: what an older run in this folder logged is cleared


class Logger(Protocol):
    """A place training is followed in; the loop calls these on rank 0."""

    def start(self, session: Session) -> None: ...

    def epoch(self, record: dict[str, Any]) -> None: ...

    def end(self, status: str) -> None: ...  # FINISHED | FAILED | KILLED


@dataclass(frozen=True)
class LoggerSpec:
    """A logger's entry in LOGGERS: the modules a config makes it import, its pip extra, how to build it."""

    needs: Callable[[Config], tuple[str, ...]]
    extra: str
    build: Callable[[Config, RunDir], Logger]


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The record's numbers as metrics.jsonl holds them, by name: finite ints and floats (json_safe writes
    NaN and infinity as null), without `epoch`, the step they are logged at.

    Args:
        record: one epoch's metrics record.
    """
    return {
        k: float(v)
        for k, v in record.items()
        if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence the INFO lines a library logs (MLflow's and alembic's 'creating tables...') for a block."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# ---------------------------------------------------------------------------------------------- TensorBoard


def tb_dir(run: RunDir) -> Path:
    """RUN/tb: the TensorBoard event files (`tensorboard --logdir RUN/tb`)."""
    return run.tb


@torch.inference_mode()
def per_dim_kl(model: nn.Module, data: Prepared, batch_size: int = 1000) -> torch.Tensor | None:
    """Mean KL(q(z_d|x) || p(z_d)) over a split, per latent dimension [D] (float64): their sum is the split's
    analytic KL. None unless the model has one Gaussian latent layer with a factorised Gaussian prior.

    Args:
        model: the model (its encode and prior are used).
        data: the split.
        batch_size: images per encoder call.
    """
    caps = capabilities(model)
    if not (caps.one_latent_layer and not caps.labelled) or len(data) == 0:
        return None
    prior = model.prior()
    if not _factorised_normal(prior):
        return None
    total = None
    for start in range(0, len(data), batch_size):
        q = model.encode(data.batch(slice(start, start + batch_size)))
        if not _factorised_normal(q):
            return None
        kl = torch.distributions.kl_divergence(q.base_dist, prior.base_dist).double().sum(0)
        total = kl if total is None else total + kl
    return total / len(data)


def _factorised_normal(d: object) -> bool:
    """An Independent(Normal) over one event dimension: its KL splits over dimensions."""
    dist = torch.distributions
    return (
        isinstance(d, dist.Independent)
        and isinstance(d.base_dist, dist.Normal)
        and d.reinterpreted_batch_ndims == 1
    )


@torch.inference_mode()
def sample_grid(model: nn.Module, n: int, seed: int) -> torch.Tensor | None:
    """n samples [n, C, H, W] in [0, 1] (the same draws each epoch, from `seed`), or None for a model that
    cannot draw (no prior to decode and no sampler of its own, e.g. the autoencoder).

    Args:
        model: the model.
        n: how many images.
        seed: the seed of the draws.
    """
    from vaelab.evaluate.quality import model_images

    if not capabilities(model).generative:
        return None
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        images, _ = model_images(model, n, torch.Generator(device=device).manual_seed(seed))
    finally:
        model.train(was_training)
    return images.float().cpu()


class TensorBoardLogger:
    """Event files in RUN/tb: scalars per epoch, sample grids, per-dimension KL histograms."""

    def __init__(self, config: Config, run: RunDir) -> None:
        self.config, self.run, self.writer = config, run, None

    def start(self, session: Session) -> None:
        """Open a writer; on a resume, TensorBoard drops anything logged past the checkpoint's epoch."""
        from torch.utils.tensorboard import SummaryWriter

        self._close()
        if session.fresh:
            shutil.rmtree(tb_dir(self.run), ignore_errors=True)
        self.session = session
        done = session.history[-1]["epoch"] if session.history else 0
        self.writer = SummaryWriter(str(tb_dir(self.run)), purge_step=done + 1 if done else None)
        shape = next(iter(session.evals.values())).shape if session.evals else ()
        self.images = len(shape) == 3 and all(e.table is None for e in session.evals.values())

    def epoch(self, record: dict[str, Any]) -> None:
        """The record's numbers, then (when due) a sample grid and the KL histograms."""
        step, w, s = record["epoch"], self.writer, self.session
        for k, v in scalars(record).items():
            w.add_scalar(k, v, step)
        every = self.config.train.log_images_every
        if self.images and every > 0 and step % every == 0:
            grid = sample_grid(s.model, SAMPLES, self.config.train.eval_seed)
            if grid is not None:
                w.add_images("samples", grid, step)
        for name, data in s.evals.items():
            kl = per_dim_kl(s.model, data, self.config.train.eval_batch_size)
            if kl is not None:
                w.add_histogram(f"kl_per_dim/{name}", kl.cpu().numpy(), step)
        w.flush()

    def end(self, status: str) -> None:
        """Close the event file."""
        self._close()

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# --------------------------------------------------------------------------------------------------- MLflow


def mlflow_paths(run: RunDir) -> tuple[Path, Path, Path]:
    """RUN/mlflow.db (the default store), RUN/mlflow-artifacts/ and RUN/mlflow.json (the MLflow run this
    folder logs to: tracking URI and run id)."""
    return run.mlflow_db, run.mlflow_artifacts, run.mlflow_run


def read_mlflow_run(ident: Path, strict: bool = True) -> dict[str, Any]:
    """RUN/mlflow.json's tracking_uri and run_id ({} when absent); unreadable, a one-line ConfigError if
    `strict` (a resume must continue that MLflow run), else {} (a fresh start replaces it)."""
    try:
        known = json.loads(ident.read_text(encoding="utf-8")) if ident.is_file() else {}
    except (OSError, ValueError):
        known = None
    named = isinstance(known, dict) and all(isinstance(known.get(k), str) for k in ("tracking_uri", "run_id"))
    if known == {} or named:
        return known
    if strict:
        raise ConfigError(
            f"{ident}: not the MLflow run this folder logs to (JSON with tracking_uri and run_id); remove it "
            "to log to a new MLflow run"
        )
    return {}


def tracking_uri(config: Config, run: RunDir) -> str:
    """`train.mlflow_uri`, or the SQLite store inside the run."""
    return config.train.mlflow_uri or f"sqlite:///{mlflow_paths(run)[0].absolute()}"


def _mlflow_modules(config: Config) -> tuple[str, ...]:
    """What --log mlflow imports: the client, and SQLAlchemy with alembic for a SQLite store."""
    uri = config.train.mlflow_uri
    return ("mlflow",) + (("sqlalchemy", "alembic") if not uri or uri.startswith("sqlite:") else ())


class MlflowLogger:
    """An MLflow run: params, metrics per epoch (step = epoch), artifacts at the end."""

    def __init__(self, config: Config, run: RunDir) -> None:
        self.config, self.run, self.run_id = config, run, None
        self.uri = tracking_uri(config, run)

    def start(self, session: Session) -> None:
        """Open (or, on a resume, reopen) the MLflow run and log the epochs it lacks."""
        from mlflow import MlflowClient

        with _quiet("mlflow", "alembic"):
            self.client = MlflowClient(self.uri)
            if self.run_id is None:
                self.run_id = self._open(session)
            self.client.update_run(self.run_id, status="RUNNING")
        logged = int(self.client.get_run(self.run_id).data.tags.get("vaelab.epoch", 0))
        for record in session.history:
            if record["epoch"] > logged:
                self.epoch(record)

    def _open(self, session: Session) -> str:
        """The run id: the one RUN/mlflow.json names when resuming on the same store, else a new run (whose
        params are the flattened config; a fresh start deletes the run an older training logged)."""
        from mlflow.entities import Param

        _, artifacts, ident = mlflow_paths(self.run)
        known = read_mlflow_run(ident, strict=not session.fresh)
        if known.get("tracking_uri") == self.uri:
            if not session.fresh:
                return known["run_id"]
            with contextlib.suppress(Exception):  # gone already, or another user's store: keep going
                self.client.delete_run(known["run_id"])
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        exp_id = (
            exp.experiment_id
            if exp is not None
            else self.client.create_experiment(  # a file URI needs an absolute path: --out may be relative
                EXPERIMENT,
                artifact_location=None if self.config.train.mlflow_uri else artifacts.absolute().as_uri(),
            )
        )
        mlrun = self.client.create_run(
            exp_id, run_name=self.run.root.name, tags={"vaelab.run_dir": str(self.run.root.absolute())}
        )
        run_id = mlrun.info.run_id
        params = [
            Param(k, json.dumps(v) if isinstance(v, list | dict) else str(v)) for k, v in _flat(session)
        ]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=params[i : i + 100])
        atomic_write_json(ident, {"tracking_uri": self.uri, "run_id": run_id, "experiment_id": exp_id})
        return run_id

    def epoch(self, record: dict[str, Any]) -> None:
        """The record's numbers at step = epoch, and the tag that says which epoch was logged last."""
        from mlflow.entities import Metric, RunTag

        now, step = int(time.time() * 1000), record["epoch"]
        metrics = [Metric(k, v, now, step) for k, v in scalars(record).items()]
        self.client.log_batch(self.run_id, metrics=metrics, tags=[RunTag("vaelab.epoch", str(step))])

    def end(self, status: str) -> None:
        """metrics.jsonl and config.json as artifacts, and the run's status."""
        if self.run_id is None:
            return
        for f in (self.run.metrics, self.run.config):
            if f.is_file():
                self.client.log_artifact(self.run_id, str(f))
        self.client.set_terminated(self.run_id, status)


def _flat(session: Session) -> list[tuple[str, Any]]:
    """The config as dotted key -> value (model.extra as one JSON value)."""
    return [
        (f"{section}.{k}", v) for section, part in session.config.to_dict().items() for k, v in part.items()
    ]


def log_outputs(run_dir: str | Path, config: Config) -> None:
    """After `vaelab train` drew the figures: log them (and eval.json, when it scores the final checkpoint)
    as artifacts of the run's MLflow run. Nothing for runs that do not log to MLflow.

    Args:
        run_dir: the run folder.
        config: the run's config.
    """
    run = RunDir.at(run_dir)
    ident = mlflow_paths(run)[2]
    if "mlflow" not in config.train.log or not ident.is_file():
        return
    from mlflow import MlflowClient

    known = read_mlflow_run(ident)
    client = MlflowClient(known["tracking_uri"])
    if run.figures.is_dir():
        client.log_artifacts(known["run_id"], str(run.figures), "figures")
    if run.eval.is_file() and run.last.is_file() and run.eval.stat().st_mtime >= run.last.stat().st_mtime:
        client.log_artifact(known["run_id"], str(run.eval))


# ------------------------------------------------------------------------------------------------ the table

LOGGERS: Registry[LoggerSpec] = Registry(
    "logger",
    {
        "tensorboard": LoggerSpec(lambda _: ("tensorboard",), "tensorboard", TensorBoardLogger),
        "mlflow": LoggerSpec(_mlflow_modules, "mlflow", MlflowLogger),
    },
)


def check_loggers(config: Config) -> None:
    """A ConfigError in one line for an unknown logger, or one whose packages are missing (naming the pip
    extra that brings them), before anything is trained or written.

    Args:
        config: the run's config (train.log).
    """
    if config.train.log and config.train.log_images_every < 0:
        raise ConfigError(
            f"train.log_images_every must be >= 0 (0: no sample grids), got {config.train.log_images_every}"
        )
    for name in config.train.log:
        spec = LOGGERS.lookup(name)
        missing = []
        for module in spec.needs(config):
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(module)
        if missing:
            raise ConfigError(
                f"--log {name} needs {', '.join(missing)}, which is not installed: "
                f"pip install 'vaelab[{spec.extra}]'"
            )


class Loggers:
    """The loggers a training calls (none off rank 0): `start`, `epoch`, and the end as a `with` block's exit
    (FINISHED, or FAILED / KILLED when training raised)."""

    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers = loggers

    def start(self, session: Session) -> None:
        """Every logger's start (once the run folder is ready)."""
        for lg in self.loggers:
            lg.start(session)

    def epoch(self, record: dict[str, Any]) -> None:
        """Every logger's epoch (after the epoch's checkpoint)."""
        for lg in self.loggers:
            lg.epoch(record)

    def __enter__(self) -> Loggers:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        status = "FINISHED" if kind is None else "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
        for lg in self.loggers:
            with contextlib.suppress(Exception) if kind is not None else contextlib.nullcontext():
                lg.end(status)


def open_loggers(config: Config, run: RunDir | None, main: bool = True) -> Loggers:
    """The loggers `train.log` names, checked (`check_loggers`) on every rank and built on the main one.

    Args:
        config: the run's config.
        run: the run folder (loggers need one).
        main: this is the rank that writes files.
    """
    names = list(dict.fromkeys(config.train.log))
    if not names:
        return Loggers([])
    if run is None:
        raise ConfigError(f"train.log ({', '.join(names)}) needs a run folder to log into: pass out=")
    check_loggers(config)
    return Loggers([LOGGERS[n].build(config, run) for n in names] if main else [])
