"""Shared pieces of the subcommands: opening a run, its data, and common options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from vaelab.config import Config
from vaelab.data import SPLIT_SEED_OFFSET as SPLIT_SEED_OFFSET  # re-exported for the leaves
from vaelab.data import Prepared, prepare_split
from vaelab.device import resolve_device
from vaelab.errors import DataError, VaelabError
from vaelab.runs import RunDir
from vaelab.train.checkpoint import config_of, model_from_checkpoint, read_checkpoint, resolve_checkpoint


@dataclass
class OpenRun:
    """A trained model with its config, checkpoint path and run folder."""

    model: nn.Module
    config: Config
    checkpoint: Path
    run: RunDir
    shape: tuple[int, int, int]
    epoch: int | None = None  # the checkpoint's epoch

    def split(self, name: str = "test", data_dir: str | None = None) -> Prepared:
        """A split of the run's data on the model's device, drawn as the trainer evaluated it.

        Args:
            name: test, valid or train.
            data_dir: where the data set lives, if not where it was.
        """
        cfg = self.config.data
        if data_dir is not None:
            cfg = self.config.replace(**{"data.data_dir": data_dir}).data
        device = next(self.model.parameters()).device
        data = prepare_split(cfg, name, device)
        if data.shape != self.shape:
            raise DataError(f"{cfg.name} images are {data.shape}, the model was built for {self.shape}")
        return data


def open_run(path: str, device: str = "cpu", which: str = "best") -> OpenRun:
    """Load a run folder (or checkpoint file) for use by a command.

    Args:
        path: a run folder or a checkpoint file.
        device: cpu, cuda, cuda:N or auto.
        which: best or last, the checkpoint of a run folder.
    """
    ckpt_path = resolve_checkpoint(path, which)
    ck = read_checkpoint(ckpt_path)
    model = model_from_checkpoint(ck, ckpt_path).to(resolve_device(device)).eval()
    p = Path(path)
    run = RunDir(p if p.is_dir() else ckpt_path.parent.parent)
    return OpenRun(model, config_of(ck, ckpt_path), ckpt_path, run, tuple(ck["shape"]), ck.get("epoch"))


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The shared run options of the commands that read a run: RUN plus --device, --checkpoint and --data-dir.

    Args:
        p: the command's parser.
    """
    p.add_argument("run", metavar="RUN", help="run folder (or a checkpoint file)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument(
        "--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of the run"
    )
    p.add_argument("--data-dir", default=None, help="where the run's data set lives, if not where it was")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1.

    Args:
        text: the flag's value as typed.
    """
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def done(*paths: Path | str) -> None:
    """Every command ends by printing where its outputs are.

    Args:
        *paths: the files written.
    """
    for p in paths:
        print(f"wrote {p}")


def require(cond: bool, message: str) -> None:
    """Raise a one-line user error unless `cond`.

    Args:
        cond: what must hold.
        message: the error's line.
    """
    if not cond:
        raise VaelabError(message)
