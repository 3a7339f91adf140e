"""The command line answers at once: `--help`, `--version`, `data list` and every subcommand's `--help` import
no torch (nor matplotlib, FastAPI, ArviZ), and `import vaelab` imports none of them either while every public
name still works. Each case runs in a fresh interpreter, since this test process has torch loaded already."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vaelab
from vaelab.cli import build_parser, main

HEAVY = ("torch", "matplotlib", "fastapi", "arviz", "scipy", "sklearn", "uvicorn", "PIL")
ROOT = Path(__file__).resolve().parents[1]

# Runs `python -m vaelab ARGV...` in this interpreter, then reports the exit code and the heavy modules loaded.
PROBE = """
import json, runpy, sys
heavy, argv = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["vaelab", *argv]
try:
    runpy.run_module("vaelab", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as e:
    code = e.code
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(heavy))
print("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}))
"""


def probe(argv: list[str]) -> dict:
    p = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY), json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in p.stderr, p.stderr
    return json.loads(p.stdout.rsplit("\nPROBE ", 1)[1])


def _subcommands() -> list[list[str]]:
    """Every subcommand's path: ['train'], ..., ['data', 'list'], ['data', 'get'], ..."""
    import argparse

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> list[list[str]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [path]
        return [p for name, child in subs[0].choices.items() for p in walk(child, [*path, name])]

    return walk(build_parser(), [])


HELPS = [pytest.param([*path, "--help"], id=" ".join(path)) for path in _subcommands()]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--help"], id="--help"),
        pytest.param(["--version"], id="--version"),
        pytest.param(["data", "list"], id="data list"),
        *HELPS,
    ],
)
def test_answers_without_importing_torch(argv):
    result = probe(argv)
    assert result == {"code": 0, "loaded": []}, (argv, result)


def test_a_plugin_still_adds_its_models_to_the_help():
    """--plugin loads the registries (and torch): then --help lists the registry, the plugin's models too."""
    plugin = ROOT / "tests" / "plugins" / "mixture_prior_vae.py"
    assert plugin.is_file()
    p = subprocess.run(
        [sys.executable, "-m", "vaelab", "train", "--plugin", str(plugin), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "\n  mog-vae " in p.stdout and "\n  vae " in p.stdout


def test_version_is_the_installed_packages(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    installed = importlib.metadata.version("vaelab")
    declared = re.search(r'(?m)^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text()).group(1)
    assert capsys.readouterr().out == f"vaelab {installed}\n"
    assert vaelab.__version__ == installed == declared  # else: reinstall (pip install -e .)


PUBLIC_API = """
import sys
import vaelab
assert not {"torch", "matplotlib", "numpy"} & set(sys.modules), "import vaelab loaded a heavy module"
from vaelab.train import TrainResult          # the subpackages are reachable ...
import vaelab.evaluate.run, vaelab.train.loop
assert vaelab.train is sys.modules["vaelab.train.loop"].train  # ... while the names stay the functions
assert vaelab.evaluate is sys.modules["vaelab.evaluate.run"].evaluate
assert vaelab.TrainResult is TrainResult
from vaelab import Config, load, register_model, register_objective, capabilities, VAE
for name in vaelab.__all__:
    assert getattr(vaelab, name) is not None, name
assert set(vaelab.__all__) <= set(dir(vaelab))
try:
    vaelab.no_such_name
except AttributeError as e:
    assert "no_such_name" in str(e)
else:
    raise AssertionError("vaelab.no_such_name did not raise")
print("ok")
"""


def test_import_vaelab_is_light_and_every_public_name_works():
    p = subprocess.run([sys.executable, "-c", PUBLIC_API], capture_output=True, text=True, timeout=120)
    assert p.stdout == "ok\n", p.stderr
