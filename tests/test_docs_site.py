"""`make docs`: the README, docs/ and the tutorials' notebooks build into a static site with `mkdocs build
--strict`, with an API page per public package written from the docstrings; a broken link or a link to a
missing page or anchor fails the build. Builds run on a copy of the tree, so the repository is not written."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the site needs the docs extra: pip install -e '.[docs]'")
pytest.importorskip("mkdocstrings_handlers.python", reason="the API pages need mkdocstrings-python")
pytest.importorskip("mkdocs_jupyter", reason="the tutorials' pages need mkdocs-jupyter")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "docs" / "mkdocs_hooks.py")
hooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hooks)
API_PACKAGES = hooks.API_PACKAGES
DOC_PAGES = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
SAVED = "saved-output-7f3a"  # a notebook's stored output; executing its cell would print something else


def _tree(tmp: Path) -> Path:
    """The files the site is built from, copied (src/ for the API pages, tutorials/ when present, the
    benchmarks' figures)."""
    tree = tmp / "tree"
    tree.mkdir()
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("docs", "src", "tutorials", "benchmarks/results"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, tree / name, symlinks=True, ignore=skip)
    return tree


def _notebook(path: Path) -> None:
    """A small notebook with a heading and a code cell whose saved output differs from what it would print."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A test tutorial\n\nSee [the ELBO](../elbo.md)."),
        nbformat.v4.new_code_cell(
            "print('executed' + '-now')",
            outputs=[nbformat.v4.new_output("stream", name="stdout", text=SAVED + "\n")],
            execution_count=1,
        ),
    ]
    path.parent.mkdir(exist_ok=True)
    nbformat.write(nb, path)


def _build(tree: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _text(html: Path) -> str:
    return re.sub(r"<[^>]+>", " ", html.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_the_site_builds_strictly_and_a_broken_link_fails_it(tmp_path):
    tree = _tree(tmp_path)
    _notebook(tree / "tutorials" / "zz-site-test.ipynb")
    site = tmp_path / "site"
    p = _build(tree, site)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "WARNING" not in p.stderr, p.stderr[-4000:]

    # The README is the home page, and its docs/ links point at the pages beside it.
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "Variational autoencoders and the variational inference behind them" in home
    assert 'href="benchmarks/"' in home and 'href="docs/' not in home
    for page in DOC_PAGES:
        assert (site / page / "index.html").is_file(), page
    bench = (site / "benchmarks" / "index.html").read_text(encoding="utf-8")
    assert 'href="../"' in bench  # ../README.md
    figure = ROOT / "benchmarks" / "results" / "kingma2014.png"  # ../benchmarks/results/X.png: copied in
    assert 'src="results/kingma2014.png"' in bench
    assert (site / "benchmarks" / "results" / "kingma2014.png").read_bytes() == figure.read_bytes()

    # One API page per public package, from the docstrings: a lazily exported name is documented where it is
    # defined, once, and linked from the packages that re-export it.
    for package in API_PACKAGES:
        assert (site / "api" / package / "index.html").is_file(), package
    models = (site / "api" / "vaelab.models" / "index.html").read_text(encoding="utf-8")
    assert 'id="vaelab.models.vae.VAE"' in models
    assert "Kingma" in _text(site / "api" / "vaelab.models" / "index.html")
    top = (site / "api" / "vaelab" / "index.html").read_text(encoding="utf-8")
    assert 'id="vaelab.models.vae.VAE"' not in top and "../vaelab.models/#vaelab.models.vae.VAE" in top
    assert 'id="vaelab.config.Config"' in (site / "api" / "vaelab.config" / "index.html").read_text()
    assert 'id="vaelab.inference.hmc.step"' in (site / "api" / "vaelab.inference" / "index.html").read_text()

    # A notebook in tutorials/ is a page, shown as saved (not executed).
    tutorial = _text(site / "tutorials" / "zz-site-test" / "index.html")
    assert "A test tutorial" in tutorial and SAVED in tutorial and "-now" in tutorial  # the source is shown
    assert "executed-now" not in tutorial  # what running the cell would have printed

    # A link to a missing page and one to a missing anchor each fail the strict build, named.
    elbo = tree / "docs" / "elbo.md"
    elbo.write_text(
        elbo.read_text(encoding="utf-8")
        + "\nSee [nowhere](no-such-page.md) and [this](estimators.md#no-such-section).\n",
        encoding="utf-8",
    )
    p = _build(tree, tmp_path / "broken-site")
    assert p.returncode != 0
    warnings = [line for line in p.stderr.splitlines() if line.startswith("WARNING")]
    assert any("elbo.md" in w and "no-such-page.md" in w for w in warnings), p.stderr[-4000:]
    assert any("elbo.md" in w and "no-such-section" in w for w in warnings), p.stderr[-4000:]
    assert len(warnings) == 2, warnings  # nothing else warns
