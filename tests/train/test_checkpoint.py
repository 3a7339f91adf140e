"""Checkpoints: safe loading, integrity, and a clear word when weights do not fit their config."""

from __future__ import annotations

import os
import pickle
import re

import pytest
import torch

import vaelab
from vaelab.errors import CheckpointError
from vaelab.train import read_checkpoint, save_checkpoint, train
from vaelab.train.checkpoint import model_from_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from vaelab_testing import small_config

    out = tmp_path_factory.mktemp("ck") / "run"
    train(small_config(**{"train.epochs": 1}), out=out)
    return out


def test_load_rebuilds_the_model(trained):
    m = vaelab.load(trained)
    ck = read_checkpoint(trained / "checkpoints/best.pt")
    for k, v in m.state_dict().items():
        assert torch.equal(v, ck["model"][k])
    assert not m.training


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"format": "vaelab-checkpoint", "version": 1, "x": evil}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: it holds objects other than tensors"):
        read_checkpoint(path)
    assert not marker.exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(evil))
    with pytest.raises(CheckpointError, match=r"raw\.pt"):
        read_checkpoint(raw)
    assert not marker.exists()


def test_truncated_checkpoint_is_named(trained, tmp_path):
    data = (trained / "checkpoints/last.pt").read_bytes()
    p = tmp_path / "cut.pt"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: corrupt or truncated"):
        read_checkpoint(p)


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7, 0.9])
def test_bit_flips_are_detected(trained, tmp_path, where):
    data = bytearray((trained / "checkpoints/last.pt").read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0x10
    p = tmp_path / "flip.pt"
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"flip\.pt: corrupt"):
        read_checkpoint(p)


def test_weights_of_another_architecture_say_what_differs(trained, tmp_path):
    ck = read_checkpoint(trained / "checkpoints/last.pt")
    ck["config"]["model"]["hidden"] = [48]
    p = tmp_path / "other.pt"
    save_checkpoint(p, ck)
    with pytest.raises(
        CheckpointError, match=r"other\.pt: weights do not fit a 'vae' model.*shapes differ: encoder"
    ):
        model_from_checkpoint(read_checkpoint(p), p)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("shape", "abc", "'shape' is 'abc', not [C, H, W] positive sizes"),
        ("shape", [1, -28, 28], "not [C, H, W] positive sizes"),
        ("shape", [1, 8], "not [C, H, W] positive sizes"),
        ("model", {3: torch.zeros(2)}, "'model' is not a dict of tensors"),
        ("config", 5, "'config' is a int"),
        ("model", {"encoder.weight": 3}, "'model' is not a dict of tensors"),
    ],
)
def test_a_sealed_but_malformed_body_is_one_line(
    trained, tmp_path, key, value, message, capsys, one_line_error
):
    """Written by other code and sealed correctly, but not what vaelab writes: refused on reading, so every
    command (sample, eval, serve) says so in one line instead of a traceback."""
    from vaelab.cli import main

    ck = read_checkpoint(trained / "checkpoints/last.pt")
    ck[key] = value
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "best.pt", ck)
    with pytest.raises(CheckpointError, match=f"best\\.pt: malformed checkpoint \\(.*{re.escape(message)}"):
        read_checkpoint(run / "checkpoints" / "best.pt")
    one_line_error(
        capsys, main(["sample", str(run), "--out", str(tmp_path / "s.png")]), "malformed checkpoint"
    )
    assert not (tmp_path / "s.png").exists()


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(2)}, p)
    with pytest.raises(CheckpointError, match=r"plain\.pt: not a vaelab checkpoint"):
        read_checkpoint(p)
    (tmp_path / "config.json").write_text('{"model": {}}')
    with pytest.raises(CheckpointError, match=r"config\.json: not a vaelab checkpoint \(not a file torch"):
        read_checkpoint(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        read_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        vaelab.load(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    torch.save(
        {"a": torch.zeros(2)}, tmp_path / "checkpoints" / "best.pt"
    )  # the run's checkpoints folder named
    with pytest.raises(
        CheckpointError,
        match="^"
        + re.escape(f"{tmp_path / 'checkpoints'}: name the run folder ({tmp_path}) or a checkpoint"),
    ):
        vaelab.load(tmp_path / "checkpoints")
