"""The command line in an unusual environment: with $HOME a plain file (or unwritable), no command prints
matplotlib's warnings about its config folder; a temporary one is used and removed at exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vaelab.commands.runtime import matplotlib_config_dir

from vaelab_testing import TINY_TRAIN


def plain_file_home(tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose HOME is a plain file, with its own TMPDIR to look into afterwards."""
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR")
    }
    return {**env, "HOME": str(home), "TMPDIR": str(tmp), "VAELAB_OFFLINE": "1"}


def vaelab(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vaelab", *argv], capture_output=True, text=True, env=env, timeout=300
    )


def test_data_list_with_home_a_plain_file_is_quiet(tmp_path):
    env = plain_file_home(tmp_path)
    p = vaelab(env, "data", "list")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.startswith("mnist ")
    assert list(Path(env["TMPDIR"]).glob("vaelab-matplotlib-*")) == []  # the temporary folder is gone


@pytest.mark.slow
def test_train_and_its_figures_with_home_a_plain_file_are_quiet(tmp_path):
    """matplotlib is imported (the figures): it is given a temporary config folder, so it says nothing."""
    env = plain_file_home(tmp_path)
    run = tmp_path / "run"
    p = vaelab(env, "train", *TINY_TRAIN, "--out", str(run))
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert (run / "figures" / "samples.png").stat().st_size > 0
    assert list(Path(env["TMPDIR"]).glob("vaelab-matplotlib-*")) == []


def test_matplotlib_folder_is_left_alone_when_usable_or_chosen(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}
    assert matplotlib_config_dir(env) is None and env == {"HOME": str(home)}
    assert list(home.iterdir()) == []  # nothing created to find out
    chosen = {"HOME": str(tmp_path / "nowhere-file"), "MPLCONFIGDIR": str(tmp_path / "mine")}
    assert matplotlib_config_dir(dict(chosen)) is None


@pytest.mark.parametrize("where", ["home", "xdg"])
def test_an_unusable_matplotlib_folder_gets_a_temporary_one(tmp_path, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(blocker)} if where == "home" else {"HOME": str(home), "XDG_CACHE_HOME": str(blocker)}
    folder = matplotlib_config_dir(env)
    assert folder is not None and env["MPLCONFIGDIR"] == folder
    assert Path(folder).is_dir() and os.access(folder, os.W_OK)
    os.rmdir(folder)
