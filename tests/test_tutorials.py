"""The tutorial notebooks (tutorials/*.ipynb) run top to bottom with small settings, and the stored ones hold a
full run's outputs: every code cell has run, none failed, and each printed the numbers its claims rest on.

A notebook's first code cell is tagged `parameters`; the test runs it with `SMALL = True` in that cell (and the
run folder moved into a temporary directory), on a kernel of this interpreter whose spec is written to a
temporary JUPYTER_PATH, so nothing is installed into the user's Jupyter folders.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest

from vaelab_testing import tiny_frey_face

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
SEEDS = "../shared/seeds/"
KERNEL = "vaelab-tutorial-python"

# notebook -> the seed tutorial it follows, the tutorial's own section headings it must name, and what its runs
# must print (the numbers its claims rest on)
NOTEBOOKS = {
    "01_vi_and_mcmc.ipynb": (
        "000_cf4882de2f0516f0.txt",
        [
            "Posterior를 구할 수 없는 이유",
            "Remedy! (1) surrogate distribution을 이용하자!",
            "Evidence Lower BOund (ELBO)",
        ],
        ["ELBO + KL", "log p(D) (closed form)", "fitted log-log slope"],
    ),
    "02_autoencoder_vs_vae.ipynb": (
        "001_a80ed20df8e069c6.txt",
        ["Generative Autoencoder", "VAE Loss", "VAE Posterior Distribution", "How to maximize ELBO"],
        ["empty cells", "score / reparam"],
    ),
    "03_three_families.ipynb": (
        "002_7295eee54deb6dea.txt",
        ["Explicit & Tractable density", "Explicit & Approximate density", "Implicit density"],
        ["exact (chain rule)", "plain evaluate refused:", "not of the GAN itself"],
    ),
    "04_vae_derivation.ipynb": (
        "003_edfd02dfa7f2773a.txt",
        ["KL Divergence", "Bayes Rule", "Monte Carlo Approximation", "목적함수 : ELBO", "Experiment"],
        ["KL closed form", "BCE (sum over 784 pixels)", "gap log p(x) − ELBO", "Frey Face"],
    ),
    "05_semi_supervised.ipynb": (
        "002_7295eee54deb6dea.txt",
        ["semi-supervised learning"],
        ["labels alone: test error", "U(x) by hand", "gap log p(x) - ELBO", "M2 test error"],
    ),
}


def read(name: str):
    """The stored notebook `name` of tutorials/."""
    return nbformat.read(TUTORIALS / name, as_version=4)


def parameters_cell(nb):
    """The first code cell, which must be tagged `parameters`."""
    cell = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in cell.metadata.get("tags", []), "the first code cell is not tagged 'parameters'"
    return cell


def small(nb, run_dir: Path, **settings: str):
    """A copy of `nb` whose parameters cell says SMALL = True, writes under `run_dir` and sets `settings`."""
    nb = copy.deepcopy(nb)
    cell = parameters_cell(nb)
    source, n = re.subn(r"^SMALL = False\b", "SMALL = True", cell.source, count=1, flags=re.M)
    assert n == 1, "the parameters cell has no line 'SMALL = False'"
    lines = [source, f"RUN_DIR = {str(run_dir)!r}", *(f"{k} = {v}" for k, v in settings.items())]
    cell.source = "\n".join(lines)
    return nb


def kernel_spec(root: Path) -> Path:
    """A kernel spec for this interpreter's ipykernel under `root` (a JUPYTER_PATH entry)."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    return root


def execute(nb, cwd: Path, timeout: int = 600):
    """Run every cell of `nb` in `cwd` on this interpreter's kernel; a failing cell raises CellExecutionError."""
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def text_of(nb) -> str:
    """Everything the code cells printed (streams and plain-text results)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """JUPYTER_PATH with this interpreter's kernel; one thread per kernel (the machine may be shared)."""
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_spec(tmp_path / "jupyter")))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "agg")
    return tmp_path


def test_there_are_the_five_notebooks_in_the_tutorials_order() -> None:
    assert sorted(p.name for p in TUTORIALS.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_each_notebook_names_its_tutorial_and_sections_and_has_a_parameters_cell(name: str) -> None:
    nb = read(name)
    seed, sections, _ = NOTEBOOKS[name]
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert SEEDS + seed in markdown, f"{name} does not name its tutorial {seed}"
    missing = [s for s in sections if f"*{s}" not in markdown]
    assert not missing, f"{name} does not name the sections {missing} of {seed} (in italics)"
    src = parameters_cell(nb).source
    assert re.search(r"^SMALL = False\b", src, flags=re.M), "the parameters cell must hold SMALL = False"
    assert re.search(r"^RUN_DIR = ", src, flags=re.M), (
        "the parameters cell must name the RUN_DIR it writes to"
    )


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_the_stored_notebook_holds_a_full_run_without_errors(name: str) -> None:
    nb = read(name)
    assert re.search(r"^SMALL = False\b", parameters_cell(nb).source, flags=re.M)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert all(counts), f"{name}: code cells that never ran: {[i for i, n in enumerate(counts) if not n]}"
    assert counts == sorted(counts), f"{name}: cells ran out of order: {counts}"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{name}: a cell failed"
    assert not [
        o for o in outputs if o.output_type == "stream" and o.name == "stderr" and "Traceback" in o.text
    ]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{name}: no figure"
    text = text_of(nb)
    for needle in NOTEBOOKS[name][2]:
        assert needle in text, f"{name}: the full run did not print {needle!r}"
    assert (TUTORIALS / name).stat().st_size < 1_600_000


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_the_notebook_runs_top_to_bottom_with_small_settings(name: str, kernel_env: Path) -> None:
    run_dir = kernel_env / "run"
    data_dir = tiny_frey_face(kernel_env / "data")
    nb = execute(small(read(name), run_dir, DATA_DIR=repr(str(data_dir))), TUTORIALS)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    text = text_of(nb)
    for needle in NOTEBOOKS[name][2]:
        assert needle in text, f"{name}: the small run did not print {needle!r}"
    assert list(run_dir.rglob("*.png")), "the notebook wrote no figure into its RUN_DIR"


@pytest.mark.slow
def test_a_failing_claim_fails_the_notebook(kernel_env: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("SMALL = False"), nbformat.v4.new_code_cell("assert 1 + 1 == 3")]
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="AssertionError"):
        execute(nb, kernel_env)
