"""Ctrl-C and a closed stdout end a command quietly with the conventional exit codes: one line and 130 for
Ctrl-C (at any moment, the torch import included), nothing and 141 when the reader of stdout has gone
(`vaelab ... | head -1`). Each case runs `python -m vaelab` in a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vaelab_testing import TINY_TRAIN, default_sigint

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc and sends POSIX signals")


def vaelab(*argv: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "VAELAB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "vaelab", *argv],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=default_sigint,
        **kwargs,
    )


def wait_for_mapped(proc: subprocess.Popen, needle: str, timeout: float = 60.0) -> bool:
    """Wait until the child has a shared library whose path contains `needle` mapped (its import began)."""
    end = time.monotonic() + timeout
    maps = Path(f"/proc/{proc.pid}/maps")
    while time.monotonic() < end and proc.poll() is None:
        try:
            if needle in maps.read_text():
                return True
        except OSError:
            pass
        time.sleep(0.002)
    return False


def test_ctrl_c_while_torch_is_imported_is_one_line_and_exit_130(tmp_path):
    proc = vaelab(
        "train", *TINY_TRAIN, "--epochs", "100", "--out", str(tmp_path / "run"), stdout=subprocess.PIPE
    )
    try:
        assert wait_for_mapped(proc, "libtorch"), "torch was never imported"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert "Traceback" not in err, err
    assert err == "vaelab train: interrupted\n", err
    assert proc.returncode == 130


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["data", "list"], 141),
        # argparse itself ignores an error writing the help (ArgumentParser._print_message): silent, exit 0
        (["--help"], 0),
        (["train", "--help"], 0),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_a_closed_stdout_is_silent(argv, code):
    read, write = os.pipe()
    proc = vaelab(*argv, stdout=write)
    os.close(write)
    os.close(read)  # the reader has gone before the command writes anything
    _, err = proc.communicate(timeout=120)
    assert err == "", err
    assert proc.returncode == code


def test_train_into_a_closed_pipe_finishes_its_run_then_exits_141(tmp_path):
    """The run is trained and saved (stdout is written at the end), then the closed pipe ends it silently."""
    run = tmp_path / "run"
    read, write = os.pipe()
    proc = vaelab("train", *TINY_TRAIN, "--no-figures", "--out", str(run), stdout=write)
    os.close(write)
    os.close(read)
    _, err = proc.communicate(timeout=300)
    assert err == "", err
    assert proc.returncode == 141
    assert (run / "checkpoints" / "last.pt").is_file()


SWALLOWS = """import os, signal, time
try:  # library code that catches everything around its own work, as some do while they import
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(1)
except BaseException:
    pass
"""


@pytest.mark.parametrize("ours", [True, False])
def test_ctrl_c_inside_an_import_that_swallows_it_still_ends_the_command(tmp_path, ours):
    """A KeyboardInterrupt raised inside an import can be caught by the module being imported (then Ctrl-C is
    lost: the control case, without vaelab's handler); vaelab's handler ends the command there with its one line."""
    (tmp_path / "swallow.py").write_text(SWALLOWS)
    install = "signal.signal(signal.SIGINT, _interrupt_handler('train'))" if ours else "pass"
    code = f"import signal, sys; from vaelab.cli import _interrupt_handler; {install}; import swallow; print('lost')"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=default_sigint,
    )
    if ours:
        assert (done.returncode, done.stdout, done.stderr) == (130, "", "vaelab train: interrupted\n")
    else:
        assert (done.returncode, done.stdout) == (0, "lost\n")


def test_outside_an_import_ctrl_c_is_a_keyboard_interrupt_and_main_restores_the_handler(capsys):
    from vaelab.cli import _interrupt_handler, main

    with pytest.raises(KeyboardInterrupt):
        _interrupt_handler("train")(signal.SIGINT, sys._getframe())
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a pytest-xdist worker
    assert main(["data", "list"]) == 0
    assert signal.getsignal(signal.SIGINT) is before
