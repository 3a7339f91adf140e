"""Faults: kill -9 at seeded moments (and inside checkpoint writes), a full disk, a folder turned read-only.

Whatever the moment, every file of the run folder is whole (JSON parses, checkpoints load, PNGs open), and
resuming until done ends with exactly the checkpoint of the run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from vaelab.train import read_checkpoint

TRAIN = [
    "train",
    "--data",
    "digits",
    "--hidden",
    "32",
    "--latent-dim",
    "2",
    "--batch-size",
    "64",
    "--threads",
    "1",
    "--quiet",
]

# A child `vaelab` whose N-th atomic file write is killed: half-way through its bytes ("write:N") or after
# the temporary file is complete but before its rename ("rename:N").
CHILD = r"""
import contextlib, os, signal, sys
import vaelab.io as vio

mode = os.environ.get("VAELAB_TEST_KILL", "")
if mode:
    kind, n = mode.split(":")
    seen = {"files": 0}
    real_open, real_replace = vio.atomic_open, vio.os.replace

    class Half:
        def __init__(self, f):
            self.f = f
        def write(self, data):
            self.f.write(bytes(data)[: max(1, len(data) // 2)])
            self.f.flush()
            os.fsync(self.f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        def __getattr__(self, name):
            return getattr(self.f, name)

    @contextlib.contextmanager
    def killing_open(path, mode="wb"):
        with real_open(path, mode) as f:
            seen["files"] += 1
            yield Half(f) if kind == "write" and seen["files"] == int(n) else f

    def killing_replace(src, dst):
        if kind == "rename" and seen["files"] == int(n):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)

    vio.atomic_open = killing_open
    vio.os.replace = killing_replace

from vaelab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _child(tmp: Path, args: list[str], env: dict | None = None, **kw) -> subprocess.Popen:
    script = tmp / "child.py"
    if not script.exists():
        script.write_text(CHILD)
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def assert_whole(run: Path) -> None:
    """Every visible file of the run folder is complete and readable."""
    for p in run.rglob("*"):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".jsonl":
            epochs = [json.loads(line)["epoch"] for line in p.read_text().splitlines()]
            assert epochs == list(range(1, len(epochs) + 1)), epochs
        elif p.suffix == ".pt":
            read_checkpoint(p)
        elif p.suffix == ".png":
            with Image.open(p) as im:
                im.load()


def _run_to_end(tmp: Path, run: Path, epochs: int) -> None:
    args = [*TRAIN, "--epochs", str(epochs), "--out", str(run)]
    if (run / "checkpoints" / "last.pt").exists():
        args.append("--resume")
    p = _child(tmp, args)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err


def _same_model(a: Path, b: Path) -> None:
    for name in ("best.pt", "last.pt"):  # best.pt too: a kill between the two writes must not leave it stale
        ca, cb = read_checkpoint(a / "checkpoints" / name), read_checkpoint(b / "checkpoints" / name)
        assert ca["epoch"] == cb["epoch"], name
        for k in ca["model"]:
            assert torch.equal(ca["model"][k], cb["model"][k]), (name, k)
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in ca["history"]]
    assert strip == [
        {k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in cb["history"]
    ]


def _finished(run: Path, epochs: int) -> bool:
    last = run / "checkpoints" / "last.pt"
    return last.exists() and read_checkpoint(last)["epoch"] == epochs


def test_a_kill_between_the_best_and_last_checkpoint_writes_leaves_neither_stale(tmp_path):
    """Each epoch renames best.pt (when it improved), last.pt, metrics.jsonl, after config.json and the first
    metrics.jsonl: kill -9 before the second rename of epoch 3 (the 10th), resume, and best.pt must be the
    uninterrupted run's (written in the other order, best.pt stayed at epoch 2 for good)."""
    ref, run = tmp_path / "reference", tmp_path / "killed"
    _run_to_end(tmp_path, ref, 3)
    assert read_checkpoint(ref / "checkpoints" / "best.pt")["epoch"] == 3  # the case that matters
    p = _child(tmp_path, [*TRAIN, "--epochs", "3", "--out", str(run)], {"VAELAB_TEST_KILL": "rename:10"})
    p.communicate(timeout=600)
    assert p.returncode == -signal.SIGKILL
    _run_to_end(tmp_path, run, 3)
    _same_model(ref, run)


@pytest.mark.slow
def test_kill_9_at_seeded_moments_and_resume(tmp_path):
    """kill -9 at 20 seeded moments (a share of the uninterrupted run's wall time, so the moments fall inside
    the run on any machine) and 4 inside the atomic protocol; each chain of resumed runs ends equal to the
    uninterrupted run, and no visible file is ever half-written. A chain that finishes before its next moment
    is called once more (a stale temporary of a kill in its last figures is removed there), checked, and a new
    one begins."""
    epochs = 30
    ref = tmp_path / "reference"
    began = time.perf_counter()
    _run_to_end(tmp_path, ref, epochs)
    ref_seconds = time.perf_counter() - began
    rng = random.Random(1234)
    plans = [("time", rng.uniform(0.05, 1.0) * ref_seconds) for _ in range(20)] + [
        ("write:1", 0),
        ("rename:2", 0),
        ("write:5", 0),
        ("rename:7", 0),
    ]
    chains, kills = 0, 0
    run = tmp_path / "killed-0"
    for kind, delay in plans:
        if _finished(run, epochs):  # a kill may have fallen in its last figures: the next call cleans up
            _run_to_end(tmp_path, run, epochs)
            _same_model(ref, run)
            chains += 1
            run = tmp_path / f"killed-{chains}"
        args = [*TRAIN, "--epochs", str(epochs), "--out", str(run)]
        if (run / "checkpoints" / "last.pt").exists():
            args.append("--resume")
        env = {} if kind == "time" else {"VAELAB_TEST_KILL": kind}
        p = _child(tmp_path, args, env)
        if kind == "time":
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
        _, err = p.communicate(timeout=600)
        assert p.returncode in (0, -signal.SIGKILL), err  # finished or killed, never failed
        kills += p.returncode == -signal.SIGKILL
        assert_whole(run)
    assert kills >= 16  # most moments fell while the child was alive (a resumed child may finish first)
    _run_to_end(tmp_path, run, epochs)
    assert_whole(run)
    assert not list(tmp_path.rglob(".*.tmp"))
    _same_model(ref, run)


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(
            signal.SIGXFSZ, signal.SIG_IGN
        )  # a write past the limit fails with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_disk_full_is_one_clear_line_and_earlier_files_survive(tmp_path):
    run = tmp_path / "r"
    _run_to_end(tmp_path, run, 2)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    p = _child(
        tmp_path,
        [*TRAIN, "--epochs", "4", "--resume", "--out", str(run)],
        preexec_fn=_limit_file_size(20_000),
    )
    _, err = p.communicate(timeout=600)
    lines = [line for line in err.splitlines() if line.strip()]
    assert p.returncode == 1 and len(lines) == 1, err
    assert "cannot write" in lines[0] and str(run) in lines[0]
    for path, data in before.items():
        if path.name != "metrics.jsonl" and path.name != "config.json":
            assert path.read_bytes() == data, path
    assert_whole(run)


def _freeze(folder: Path) -> bool:
    """Make `folder` unwritable even for root (chattr +i where it works, else chmod); True if it worked."""
    if (
        os.geteuid() == 0
        and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    ):
        pass
    else:
        folder.chmod(0o555)
    probe = folder / ".probe"
    try:
        probe.write_text("x")
    except OSError:
        return True
    probe.unlink()
    return False


def _thaw(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_folder_turned_read_only_mid_run(tmp_path):
    """A folder made read-only while training: one clear line, the files already written intact."""
    run = tmp_path / "r"
    _run_to_end(tmp_path, run, 1)
    p = _child(tmp_path, [*TRAIN, "--epochs", "400", "--resume", "--no-figures", "--out", str(run)])
    deadline = time.time() + 120
    ck = run / "checkpoints" / "last.pt"
    first = ck.stat().st_mtime_ns
    while ck.stat().st_mtime_ns == first and time.time() < deadline:  # wait until it has written again
        time.sleep(0.05)
    folders = (run, run / "checkpoints")
    try:
        frozen = all(_freeze(f) for f in folders)
        if not frozen:
            p.kill()
            pytest.skip("cannot make a folder read-only here (root without chattr +i)")
        _, err = p.communicate(timeout=300)
    finally:
        for f in folders:
            _thaw(f)
    lines = [line for line in err.splitlines() if line.strip()]
    assert p.returncode == 1 and len(lines) == 1, err
    assert ("cannot write" in lines[0] or "is not writable" in lines[0]) and str(run) in lines[0], lines[0]
    assert_whole(run)
