"""safetensors export: vaelab.load(DIR) rebuilds every kind of model with no pickle, and its outputs equal the
original's exactly; the model card quotes eval.json's numbers with their method and standard error."""

from __future__ import annotations

import json
import pickle
import shutil
import stat

import pytest
import torch

import vaelab
from vaelab.errors import CheckpointError
from vaelab.export.run import export_run
from vaelab.io import FILE_MODE
from vaelab.train import read_checkpoint, resolve_checkpoint

from conftest import KINDS

pytest.importorskip("safetensors")


def _refuse_pickle(monkeypatch) -> list[str]:
    """torch.load and every pickle entry point raise, and are recorded (in case a caller catches the error)."""
    calls: list[str] = []

    def refusing(target: str):
        def refuse(*_a, **_k):
            calls.append(target)
            raise AssertionError("a pickle was read")

        return refuse

    for target in ("torch.load", "pickle.load", "pickle.loads", "pickle.Unpickler"):
        monkeypatch.setattr(target, refusing(target))
    return calls


@pytest.mark.parametrize("kind", list(KINDS))
def test_load_of_the_folder_is_the_same_model_with_no_pickle(runs, tmp_path, kind, monkeypatch):
    out = tmp_path / "w"
    res = export_run(runs[kind], out, "safetensors")
    assert sorted(p.name for p in res.files) == ["README.md", "config.json", "model.safetensors"]
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    # every file as readable as any other this process writes (safetensors' own save_file makes its file 0600)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == dict.fromkeys(
        ["README.md", "config.json", "model.safetensors"], FILE_MODE
    )
    original = vaelab.load(runs[kind])
    ck = read_checkpoint(resolve_checkpoint(runs[kind]))  # a GAN has last.pt only
    assert json.loads((out / "config.json").read_text()) == ck["config"]

    with monkeypatch.context() as m:
        calls = _refuse_pickle(m)
        loaded = vaelab.load(out)
    assert calls == []
    assert type(loaded) is type(original) and not loaded.training
    theirs = loaded.state_dict()
    assert list(theirs) == list(original.state_dict())
    for k, v in original.state_dict().items():
        assert torch.equal(v, theirs[k]) and v.dtype == theirs[k].dtype, k
    caps = vaelab.capabilities(original)
    x = torch.rand(6, *ck["shape"]).round()
    with torch.no_grad():
        if caps.importance:  # the same draws give the same weights, bit for bit
            kw = {"y": torch.arange(6) % caps.num_classes} if caps.conditional else {}
            a = original.log_importance_weights(x, 4, torch.Generator().manual_seed(1), **kw)
            b = loaded.log_importance_weights(x, 4, torch.Generator().manual_seed(1), **kw)
            assert torch.equal(a, b)
        if caps.sampler:
            a = original.generate(3, torch.Generator().manual_seed(2))
            b = loaded.generate(3, torch.Generator().manual_seed(2))
            assert torch.equal(a, b)


def test_the_model_card_quotes_eval_json(runs, tmp_path, capsys):
    from vaelab.cli import main

    run = tmp_path / "run"
    shutil.copytree(runs["vae"], run)
    args = ["eval", str(run), "--importance", "20", "--limit", "30", "--quiet", "--threads", "1"]
    assert main(args) == 0
    ev = json.loads((run / "eval.json").read_text())
    export_run(run, tmp_path / "w", "safetensors")
    card = (tmp_path / "w/README.md").read_text()
    for name in ("elbo", "importance"):
        block = ev[name]
        value = block.get("log_px", block.get("estimate"))
        row = next(line for line in card.splitlines() if line.startswith(f"| {name} |"))
        assert block["method"].replace("|", "\\|") in row  # a table cell escapes "|"
        assert f"| {value:.2f} | {block['stderr']:.3f} |" in row, row
    assert (
        "| importance | importance sampling with q(z\\|x) as proposal (IWAE bound) | num_samples=20 |" in card
    )
    assert "30 images" in card and "nats per image" in card
    assert f"vaelab.load({str(tmp_path / 'w')!r})" in card  # how to load it, with this folder's path
    assert "no torch.load, no pickle" in card

    ev["epoch"] = 99  # an eval.json of another epoch is named, its numbers left out
    (run / "eval.json").write_text(json.dumps(ev))
    export_run(run, tmp_path / "stale", "safetensors")
    stale = (tmp_path / "stale/README.md").read_text()
    assert "at epoch 99, not the exported best.pt at epoch 1" in stale and "| importance |" not in stale
    export_run(runs["vae"], tmp_path / "none", "safetensors")  # no eval.json at all
    assert "The run has no eval.json" in (tmp_path / "none/README.md").read_text()
    (run / "eval.json").write_text("{not json")  # unreadable: said in one line, no numbers
    export_run(run, tmp_path / "bad", "safetensors")
    bad = (tmp_path / "bad/README.md").read_text()
    assert (
        "The run's eval.json could not be read (" in bad
        and "no numbers here" in bad
        and "| elbo |" not in bad
    )


def test_a_damaged_folder_is_one_clear_error(runs, tmp_path):
    out = tmp_path / "w"
    export_run(runs["vae"], out, "safetensors")
    weights = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        vaelab.load(out)
    (out / "model.safetensors").write_bytes(weights)
    (out / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json: not JSON"):
        vaelab.load(out)
    (out / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config.json: unreadable"):
        vaelab.load(out)


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "f").mkdir()
    save_file({"w": torch.zeros(2)}, str(tmp_path / "f/model.safetensors"))
    with pytest.raises(CheckpointError, match="not written by vaelab export"):
        vaelab.load(tmp_path / "f")


def test_the_guard_sees_a_checkpoints_torch_load(runs, monkeypatch):
    """The guard the round trip relies on does see (and stop) a run folder's torch.load."""
    calls = _refuse_pickle(monkeypatch)
    with pytest.raises(CheckpointError):  # the checkpoint reader turns the refusal into its one line
        vaelab.load(runs["vae"])
    with pytest.raises(AssertionError):
        pickle.loads(b"")
    assert calls == ["torch.load", "pickle.loads"]
