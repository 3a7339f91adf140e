"""vaelab as a package: the ready configs found by name, `vaelab configs`, the extras, and (slow) a wheel built
from the sdist, holding the explorer's files and the configs, installed into a fresh virtual environment where
`vaelab --version`, `vaelab configs` and a one-epoch training run away from this source tree."""

from __future__ import annotations

import email.parser
import json
import math
import os
import re
import shutil
import site
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from vaelab.cli import main
from vaelab.commands.configs import first_comment
from vaelab.config import find_config_file, load_config_file, shipped_configs
from vaelab.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
REPO_CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
STATIC = sorted(p.name for p in (ROOT / "src" / "vaelab" / "serve" / "static").iterdir() if p.is_file())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = PYPROJECT["project"]["version"]
DEV_EXTRAS = {"test", "docs"}  # for working on vaelab; `all` is every other extra


def test_the_shipped_configs_are_the_repositorys_configs():
    """One source of truth: the package's configs are configs/*.yaml, name for name and byte for byte."""
    shipped = shipped_configs()
    assert list(shipped) == [p.stem for p in REPO_CONFIGS]
    assert "pytorch-examples" in shipped
    for p in REPO_CONFIGS:
        assert shipped[p.stem].read_bytes() == p.read_bytes(), p.name


def test_a_shipped_config_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    by_path = load_config_file(ROOT / "configs" / "pytorch-examples.yaml")
    assert load_config_file("pytorch-examples") == by_path
    assert load_config_file("pytorch-examples.yaml") == by_path
    assert by_path["model.hidden"] == [400] and by_path["train.batch_size"] == 128


def test_a_path_that_exists_is_read_before_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("pytorch-examples").write_text("train:\n  lr: 0.5\n")
    assert load_config_file("pytorch-examples") == {"train.lr": 0.5}
    assert find_config_file("pytorch-examples") == Path("pytorch-examples")


def test_a_relative_configs_path_still_works(monkeypatch):
    """Scripts that pass `--config configs/NAME.yaml` from the repository keep working."""
    monkeypatch.chdir(ROOT)
    assert find_config_file("configs/kingma2014-mnist.yaml") == Path("configs/kingma2014-mnist.yaml")
    assert load_config_file("configs/kingma2014-mnist.yaml")["model.hidden"] == [500]


@pytest.mark.parametrize("name", ["no-such-config", "no-such.yaml", "configs/missing.yaml"])
def test_an_unknown_name_is_one_line_listing_the_shipped_ones(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code = main(["train", "--config", name, "--out", str(out), "--quiet"])
    line = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in line, line
    assert line.startswith(f"vaelab train: error: cannot read config file {name}: no such file"), line
    assert "Errno" not in line
    for p in REPO_CONFIGS:
        assert p.stem in line
    assert not out.exists()


def test_a_name_with_a_folder_or_another_suffix_is_not_looked_up(tmp_path, monkeypatch):
    """Only a bare name is a shipped config's: `elsewhere/pytorch-examples` names a file that is not there."""
    monkeypatch.chdir(tmp_path)
    for path in ("elsewhere/pytorch-examples", "pytorch-examples.txt"):
        with pytest.raises(ConfigError, match="no such file, and no shipped config"):
            find_config_file(path)


def test_vaelab_configs_lists_each_with_its_first_comment_line(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(REPO_CONFIGS)
    for line, p in zip(lines, REPO_CONFIGS, strict=True):
        first = next(x for x in p.read_text().splitlines() if x.startswith("#")).lstrip("# ").strip()
        name, description = line.split(maxsplit=1)
        assert (name, description) == (p.stem, first)


def test_first_comment_skips_blank_comments_and_says_when_there_is_none():
    assert first_comment("#\n#   The one. \n# not this\ndata: {}\n") == "The one."
    assert first_comment("data:\n  name: digits\n") == "(no description)"


def test_vaelab_configs_imports_no_torch():
    code = "import sys; from vaelab.cli import main; main(['configs']); print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "[]"


def test_all_names_every_optional_extra_by_self_reference():
    """`pip install vaelab[all]` pulls every optional feature; the list lives in each extra, once."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    (spec,) = extras["all"]
    m = re.fullmatch(r"vaelab\[([a-z0-9,\-]+)\]", spec)
    assert m, spec
    named = m.group(1).split(",")
    assert len(named) == len(set(named))
    assert set(named) == set(extras) - DEV_EXTRAS - {"all"}


# --- the built package, installed away from this tree -------------------------------------------------------


def _build(tmp: Path) -> tuple[Path, Path]:
    """`python -m build` (sdist, then the wheel from the sdist) on a copy of the tree: the repository is not
    written to. Returns (sdist, wheel)."""
    pytest.importorskip("build", reason="python -m build needs the `build` package (the test extra)")
    tree = tmp / "tree"
    skip = shutil.ignore_patterns(
        ".git",
        ".venv*",
        "runs",
        "site",
        "build",
        "dist",
        "*.egg-info",
        "__pycache__",
        ".*_cache",
        ".hypothesis",
    )
    shutil.copytree(ROOT, tree, symlinks=True, ignore=skip)
    assert (tree / "src" / "vaelab" / "configs").is_symlink()
    dist = tmp / "dist"
    p = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (sdist,) = dist.glob("vaelab-*.tar.gz")
    (wheel,) = dist.glob("vaelab-*.whl")
    return sdist, wheel


def _fresh_venv(tmp: Path) -> Path:
    """A new virtual environment that sees this environment's installed libraries (torch, numpy, ...) but not
    vaelab: a site directory of links to every entry of our site-packages except vaelab's, added by a .pth.
    Nothing is downloaded or copied; returns its python."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    deps = tmp / "deps"
    deps.mkdir()
    ours = Path(site.getsitepackages()[0])
    for entry in ours.iterdir():
        if not entry.name.lower().startswith(("vaelab", "__editable__")):
            (deps / entry.name).symlink_to(entry)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "_vaelab_test_deps.pth").write_text(f"import site; site.addsitedir({str(deps)!r})\n")
    return python


@pytest.mark.slow
def test_the_wheel_installs_and_trains_in_a_fresh_environment(tmp_path):
    t0 = time.perf_counter()
    sdist, wheel = _build(tmp_path)
    t_build = time.perf_counter() - t0

    # The sdist holds the configs as files (the symlink followed) and the whole source.
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
    for p in REPO_CONFIGS:
        assert members[f"src/vaelab/configs/{p.name}"].isfile(), p.name
    assert {"MANIFEST.in", "tests/conftest.py", "Makefile"} <= set(members)

    # The wheel: the explorer's static files and the configs, byte for byte; the extras in its metadata.
    with zipfile.ZipFile(wheel) as z:
        for name in STATIC:
            data = (ROOT / "src" / "vaelab" / "serve" / "static" / name).read_bytes()
            assert z.read(f"vaelab/serve/static/{name}") == data, name
        for p in REPO_CONFIGS:
            assert z.read(f"vaelab/configs/{p.name}") == p.read_bytes(), p.name
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(z.read(meta_name).decode())
    assert meta["Version"] == VERSION
    extras = set(meta.get_all("Provides-Extra"))
    assert set(PYPROJECT["project"]["optional-dependencies"]) == extras
    # vaelab[all] pulls vaelab with every extra but the development ones
    (everything,) = [
        r
        for r in map(Requirement, meta.get_all("Requires-Dist"))
        if r.marker and r.marker.evaluate({"extra": "all"})
    ]
    assert everything.name == "vaelab" and everything.extras == extras - DEV_EXTRAS - {"all"}

    t0 = time.perf_counter()
    python = _fresh_venv(tmp_path)
    # --no-index: every dependency must already be there (offline); none is fetched.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    t_install = time.perf_counter() - t0

    work = tmp_path / "elsewhere"  # no configs/ and no src/ here
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", VAELAB_OFFLINE="1")
    vaelab_bin = str(python.parent / "vaelab")

    def run(*argv: str) -> str:
        p = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        return p.stdout

    where = run(
        str(python),
        "-c",
        "import vaelab, importlib.resources as r; print(vaelab.__file__); "
        "print(r.files('vaelab').joinpath('serve/static/index.html').is_file())",
    ).split()
    assert Path(where[0]).is_relative_to(python.parents[1]) and where[1] == "True", where
    assert run(vaelab_bin, "--version") == f"vaelab {VERSION}\n"
    assert [line.split()[0] for line in run(vaelab_bin, "configs").splitlines()] == [
        p.stem for p in REPO_CONFIGS
    ]

    t0 = time.perf_counter()
    out = run(
        vaelab_bin,
        "train",
        "--config",
        "pytorch-examples",
        "--data",
        "digits",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--quiet",
        "--out",
        "run",
    )
    t_train = time.perf_counter() - t0
    assert out.splitlines()[-1] == "run folder: run"
    config = json.loads((work / "run" / "config.json").read_text())
    assert config["model"]["hidden"] == [400]  # from the shipped config, found by name
    assert config["data"]["name"] == "digits"  # the flag over the config's mnist
    (epoch,) = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    assert epoch["epoch"] == 1 and math.isfinite(epoch["test_elbo"]) and epoch["test_elbo"] < 0
    print(f"\nbuild {t_build:.1f} s, venv + install {t_install:.1f} s, one-epoch training {t_train:.1f} s")
