"""One training at a time per run folder: RUN/.lock refuses a second one in one line, a lock left by a killed
process is taken over with a note, and the lock goes on every exit (an error, Ctrl-C)."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vaelab.runs as runs
from vaelab.cli import main
from vaelab.errors import DataError, VaelabError
from vaelab.runs import RunDir, hold_lock
from vaelab.train import distributed, loop, read_checkpoint, train

from vaelab_testing import TINY_TRAIN, default_sigint

# A process that holds a run folder's lock until its stdin closes.
HOLDER = """
import sys
from vaelab.runs import RunDir, hold_lock
with hold_lock(RunDir.at(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""
NO_SUCH_PID = 999_999_999  # above any pid_max (at most 2**22 on Linux)


def _hold(run: Path) -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert p.stdout.readline().strip() == "held"
    return p


def _wait_for(path: Path, child: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.is_file():
        assert child.poll() is None, child.communicate()[1]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_second_training_into_a_locked_folder_is_one_line_naming_the_folder_and_pid(
    tmp_path, capsys, one_line_error
):
    """Two trainings into one --out both exited 0, config.json from one and the checkpoints of the other."""
    run = tmp_path / "run"
    holder = _hold(run)
    try:
        assert (run / ".lock").read_text() == f"{holder.pid} {socket.gethostname()}\n"
        code = main(["train", *TINY_TRAIN, "--out", str(run)])
        one_line_error(capsys, code, f"{run} is in use by another training (pid {holder.pid} on ")
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing of the second run written
        with pytest.raises(VaelabError, match=f"pid {holder.pid}"):  # the Python API too
            train(loop.Config().replace(**{"train.progress": False}), out=run)
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    assert not run.exists()  # the holder made the folder, wrote nothing in it, and removed it again
    assert main(["train", *TINY_TRAIN, "--no-figures", "--out", str(run)]) == 0
    assert not (run / ".lock").exists() and read_checkpoint(run / "checkpoints/last.pt")["epoch"] == 1


def test_a_running_training_holds_the_lock_and_ctrl_c_releases_it(tmp_path, capsys, one_line_error):
    """A real `vaelab train` child: a second training is refused while it runs; SIGINT ends it with exit
    code 130 and no lock left, and the run resumes."""
    run = tmp_path / "run"
    args = [*TINY_TRAIN, "--epochs", "100000", "--no-figures", "--out", str(run)]  # the last --epochs wins
    child = subprocess.Popen(
        [sys.executable, "-m", "vaelab", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        _wait_for(run / "checkpoints/last.pt", child)
        assert (run / ".lock").read_text().split()[0] == str(child.pid)
        code = main(["train", *TINY_TRAIN, "--resume", "--epochs", "100001", "--out", str(run)])
        one_line_error(capsys, code, str(run), f"pid {child.pid}")
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert not (run / ".lock").exists()
    done = read_checkpoint(run / "checkpoints/last.pt")["epoch"]
    assert main(["train", *TINY_TRAIN, "--resume", "--epochs", str(done + 1), "--out", str(run)]) == 0


def test_the_lock_of_a_killed_process_is_taken_over_with_a_note(tmp_path, capsys):
    run = tmp_path / "run"
    holder = _hold(run)
    holder.kill()  # kill -9: no chance to remove its lock file (the kernel drops the flock)
    holder.wait(timeout=60)
    assert (run / ".lock").read_text().split()[0] == str(holder.pid)
    assert main(["train", *TINY_TRAIN, "--no-figures", "--out", str(run)]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [
        f"vaelab: note: {run}/.lock was left by pid {holder.pid} on {socket.gethostname()}, which has "
        "ended; taking the run folder over"
    ]
    assert not (run / ".lock").exists() and (run / "checkpoints/last.pt").is_file()


def test_a_stale_lock_of_a_pid_that_does_not_exist_is_taken_over(tmp_path, capsys, config_factory):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(f"{NO_SUCH_PID} {socket.gethostname()}\n")
    res = train(config_factory(**{"train.epochs": 1}), out=run)
    assert len(res.history) == 1 and not (run / ".lock").exists()
    assert f"was left by pid {NO_SUCH_PID} on" in capsys.readouterr().err


def test_where_files_cannot_be_locked_a_live_pid_holds_the_folder(tmp_path, monkeypatch, config_factory):
    """A file system without flock (ENOLCK): the pid in the file decides, alive on this host or not."""

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runs.fcntl, "flock", no_flock)
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(f"{os.getppid()} {socket.gethostname()}\n")  # our parent: alive
    with pytest.raises(VaelabError, match=f"is in use by another training \\(pid {os.getppid()} on "):
        train(config_factory(**{"train.epochs": 1}), out=run)
    assert (run / ".lock").read_text() == f"{os.getppid()} {socket.gethostname()}\n"  # left as it was
    (run / ".lock").write_text(f"{NO_SUCH_PID} {socket.gethostname()}\n")
    assert len(train(config_factory(**{"train.epochs": 1}), out=run).history) == 1
    (run / ".lock").write_text(f"{NO_SUCH_PID} elsewhere.example\n")  # another host's pid cannot be asked
    with pytest.raises(VaelabError, match="on elsewhere.example"):
        train(config_factory(**{"train.epochs": 1}), out=run, resume=True)


@pytest.mark.parametrize("fault", [KeyboardInterrupt, DataError])
def test_the_lock_goes_on_every_exit_and_a_refused_run_leaves_no_folder(fault, tmp_path, monkeypatch, capsys):
    def fail(*_args, **_kw):
        raise fault("refused") if fault is DataError else fault()

    monkeypatch.setattr(loop, "resolve_data", fail)  # reading the data fails (or is interrupted)
    fresh = tmp_path / "a" / "b" / "run"
    assert main(["train", *TINY_TRAIN, "--out", str(fresh)]) == (130 if fault is KeyboardInterrupt else 1)
    assert not (tmp_path / "a").exists()  # the folders the lock made are gone with it
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main(["train", *TINY_TRAIN, "--out", str(kept)]) != 0
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]


def test_the_lock_is_reentrant_in_one_process(tmp_path):
    run = RunDir.at(tmp_path / "run")
    with hold_lock(run), hold_lock(run):
        assert run.lock.is_file()
    assert not run.lock.exists() and not run.root.exists()


def test_only_rank_0_locks(tmp_path, monkeypatch, config_factory):
    """Under torchrun or --nproc the other ranks train into the folder rank 0 has locked."""
    run = tmp_path / "run"
    holder = _hold(run)
    try:
        monkeypatch.setattr(loop, "_start", lambda *a: "trained")
        monkeypatch.setattr(distributed, "world", lambda: distributed.World(1, 2, 1, 2))
        assert train(config_factory(), out=run) == "trained"
        monkeypatch.setattr(distributed, "world", lambda: distributed.World(0, 2, 0, 2))
        with pytest.raises(VaelabError, match=f"pid {holder.pid}"):
            train(config_factory(), out=run)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
