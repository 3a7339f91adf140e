"""`vaelab export` on the command line: what it writes and prints, and its bad input, each one line with exit
code 1 (2 for bad usage) and nothing half-written."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from vaelab.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def _export(run, out, *flags: str) -> int:
    return main(["export", str(run), "--out", str(out), *flags])


def test_each_format_writes_its_files_and_says_where(runs, tmp_path, capsys):
    expected = {
        "onnx": ["decoder.onnx", "encoder.onnx", "export.json"],
        "torchscript": ["decoder.pt", "encoder.pt", "export.json"],
        "safetensors": ["README.md", "config.json", "model.safetensors"],
    }
    for fmt, files in expected.items():
        out = tmp_path / fmt
        assert _export(runs["vae"], out, "--format", fmt) == 0
        captured = capsys.readouterr()
        assert sorted(p.name for p in out.iterdir()) == files
        assert sorted(captured.out.split()) == sorted(["wrote"] * len(files) + [str(out / f) for f in files])
        assert captured.err == ""  # nothing from torch's exporters or tracer
    assert _export(runs["vae"], tmp_path / "dec", "--format", "torchscript", "--part", "decoder") == 0
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == ["decoder.pt", "export.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["dec", *expected])  # no temporary folder


def test_a_model_without_an_encoder_gets_one_line_and_its_decoder(runs, tmp_path, capsys):
    assert _export(runs["gan"], tmp_path / "g", "--format", "torchscript") == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "vaelab export: encoder not exported: gan has no encoder: no q(z|x) (encode) in its contract"
    ]
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["decoder.pt", "export.json"]


def test_nothing_exportable_is_one_line_and_exit_1(runs, tmp_path, capsys, one_line_error):
    code = _export(runs["pixelcnn"], tmp_path / "p", "--format", "torchscript")
    one_line_error(capsys, code, "nothing to export as torchscript", "pixelcnn has no latent code")
    code = _export(runs["gan"], tmp_path / "p", "--format", "onnx", "--part", "encoder")
    one_line_error(capsys, code, "nothing to export as onnx: gan has no encoder")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--format", "tflite"], "argument --format: invalid choice: 'tflite'"),
        (["--format", "onnx", "--part", "prior"], "argument --part: invalid choice: 'prior'"),
        ([], "the following arguments are required: --format"),
    ],
)
def test_unknown_format_or_part_is_bad_usage(runs, tmp_path, capsys, flags, needle):
    with pytest.raises(SystemExit) as e:
        _export(runs["vae"], tmp_path / "x", *flags)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_python_api_names_bad_choices(runs, tmp_path):
    from vaelab.errors import ConfigError
    from vaelab.export import export_run

    with pytest.raises(ConfigError, match="unknown format 'tflite': choose onnx, torchscript, safetensors"):
        export_run(runs["vae"], tmp_path / "x", "tflite")
    with pytest.raises(ConfigError, match="unknown part 'prior': choose encoder, decoder, both"):
        export_run(runs["vae"], tmp_path / "x", "onnx", part="prior")


def test_a_folder_that_cannot_be_written(runs, tmp_path, capsys, one_line_error):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = _export(runs["vae"], blocker / "out", "--format", "safetensors")
    one_line_error(capsys, code, "cannot create folder", str(blocker / "out"), "is not a folder")
    code = _export(runs["vae"], blocker, "--format", "onnx")
    one_line_error(capsys, code, f"cannot create folder {blocker}", "is not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] and blocker.read_text() == "x"


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_a_read_only_parent_folder(runs, tmp_path, capsys, one_line_error):
    parent = tmp_path / "ro"
    parent.mkdir()
    frozen = (
        os.geteuid() == 0
        and subprocess.run(["chattr", "+i", str(parent)], capture_output=True).returncode == 0
    )
    if not frozen:
        parent.chmod(0o555)
    try:
        if os.access(parent, os.W_OK) and not frozen:
            pytest.skip("cannot make a folder read-only here (root without chattr +i)")
        code = _export(runs["vae"], parent / "out", "--format", "torchscript")
        one_line_error(capsys, code, str(parent / "out"), "not writable")
        assert list(parent.iterdir()) == []
    finally:
        if frozen:
            subprocess.run(["chattr", "-i", str(parent)], capture_output=True)
        parent.chmod(0o755)


def test_a_failure_midway_leaves_nothing_half_written(runs, tmp_path, capsys, monkeypatch, one_line_error):
    """The decoder fails after the encoder was written: the folder never appears, an old one stays whole."""
    from vaelab.export import formats

    real = formats.GRAPH_FORMATS["torchscript"]

    def write(graph, path):
        if graph.part == "decoder":
            raise formats.ExportError("the decoder does not trace to TorchScript: a simulated failure")
        return real.write(graph, path)

    monkeypatch.setitem(formats.GRAPH_FORMATS, "torchscript", formats.GraphFormat(".pt", write, real.run))
    out = tmp_path / "deep" / "er" / "out"
    code = _export(runs["vae"], out, "--format", "torchscript")
    one_line_error(capsys, code, "a simulated failure")
    assert (
        list(tmp_path.iterdir()) == []
    )  # neither the folder, its temporary twin, nor the parents made for it

    old = tmp_path / "old"
    old.mkdir()
    (old / "keep.txt").write_text("mine")
    code = _export(runs["vae"], old, "--format", "torchscript", "--overwrite")
    one_line_error(capsys, code, "a simulated failure")
    assert [p.name for p in tmp_path.iterdir()] == ["old"] and [p.name for p in old.iterdir()] == ["keep.txt"]


def test_an_existing_folder_is_replaced_only_when_asked(runs, tmp_path, capsys, one_line_error):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    code = _export(runs["vae"], out, "--format", "safetensors")
    one_line_error(capsys, code, f"{out} already holds files: pass --overwrite")
    assert _export(runs["vae"], out, "--format", "safetensors", "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _export(runs["vae"], empty, "--format", "safetensors") == 0  # an empty folder needs no --overwrite


def test_a_corrupt_checkpoint(runs, tmp_path, capsys, one_line_error):
    run = tmp_path / "run"
    shutil.copytree(runs["vae"], run)
    for name in ("best.pt", "last.pt"):
        ck = run / "checkpoints" / name
        data = bytearray(ck.read_bytes())
        data[len(data) // 2] ^= 0xFF
        ck.write_bytes(bytes(data))
    for fmt in ("onnx", "safetensors"):
        code = _export(run, tmp_path / "out", "--format", fmt)
        one_line_error(capsys, code, "best.pt", "corrupt")
    (run / "checkpoints" / "best.pt").write_bytes(b"PK\x03\x04 truncated")
    code = _export(run, tmp_path / "out", "--format", "torchscript")
    one_line_error(capsys, code, "best.pt: corrupt or truncated checkpoint")
    assert not (tmp_path / "out").exists()


def test_a_missing_extra_names_the_install(runs, tmp_path, capsys, monkeypatch, one_line_error):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxscript" else real(n, *a))
    code = _export(runs["vae"], tmp_path / "o", "--format", "onnx")
    one_line_error(capsys, code, "--format onnx needs onnxscript", "pip install vaelab[export]")
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "safetensors" else real(n, *a)
    )
    code = _export(runs["vae"], tmp_path / "o", "--format", "safetensors")
    one_line_error(capsys, code, "--format safetensors needs safetensors", "pip install vaelab[export]")
    assert _export(runs["vae"], tmp_path / "o", "--format", "torchscript") == 0  # needs nothing extra
