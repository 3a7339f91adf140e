"""`vaelab analogies RUN` and the report's analogies, on tiny trained runs: the file is the figure of the run's
test images at --rows and --seed, a run without a label is refused in one line, and the report shows the
figure for labelled runs only."""

from __future__ import annotations

import base64
import html
import re

import pytest

from vaelab.cli import main
from vaelab.commands.common import open_run
from vaelab.viz.analogies import analogies, analogies_figure, pick_rows
from vaelab.viz.report import build_report

from vaelab_testing import TINY_TRAIN


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analogies")
    for name, flags in (("cvae", []), ("m2", ["--labelled", "50"]), ("vae", [])):
        assert main(["train", *TINY_TRAIN, "--model", name, *flags, "--out", str(root / name)]) == 0
    return root


@pytest.mark.parametrize("kind", ["cvae", "m2"])
def test_the_command_writes_the_figure_of_the_runs_test_images(runs, kind, tmp_path, capsys):
    run = runs / kind
    assert main(["analogies", str(run), "--rows", "4", "--seed", "3", "--threads", "1"]) == 0
    path = run / "figures" / "analogies.png"
    assert capsys.readouterr().out.strip() == f"wrote {path}"
    o = open_run(str(run))
    test = o.split("test")
    want = analogies_figure(o.model, test, tmp_path / "want.png", rows=4, seed=3)
    assert path.read_bytes() == want.read_bytes()  # the run's best checkpoint, its test split, rows and seed
    other = analogies_figure(o.model, test, tmp_path / "other.png", rows=4, seed=4)
    assert other.read_bytes() != want.read_bytes()  # the seed picks the rows
    # and the rows it shows: 4 distinct test images, each decoded at every label
    idx = pick_rows(test, 4, 3)
    a = analogies(o.model, test.batch(idx), test.labels_at(idx))
    assert a.images.shape[:2] == (4, 10) and len(set(idx.tolist())) == 4


def test_out_and_checkpoint_are_honoured(runs, tmp_path, capsys):
    out = tmp_path / "deep" / "fig.png"
    out.parent.mkdir()
    assert (
        main(["analogies", str(runs / "cvae"), "--out", str(out), "--checkpoint", "last", "--rows", "2"]) == 0
    )
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    o = open_run(str(runs / "cvae"), which="last")
    want = analogies_figure(o.model, o.split("test"), tmp_path / "want.png", rows=2)
    assert out.read_bytes() == want.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["fig.png"]


def test_a_run_without_a_label_is_one_line(runs, capsys, one_line_error):
    code = main(["analogies", str(runs / "vae")])
    one_line_error(
        capsys,
        code,
        f"vaelab analogies: error: {runs / 'vae'}: VAE takes no label y: analogies need a model whose decoder "
        "does (cvae, m2)",
    )
    assert not (runs / "vae" / "figures" / "analogies.png").exists()


@pytest.mark.parametrize(
    ("rows", "why"), [("0", "must be >= 1, got 0"), ("ten", "expected an integer, got 'ten'")]
)
def test_bad_rows_is_a_usage_error_naming_the_flag(runs, capsys, rows, why):
    with pytest.raises(SystemExit) as stop:
        main(["analogies", str(runs / "cvae"), "--rows", rows])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"vaelab analogies: error: argument --rows: {why}"


def _analogies_card(page: str) -> str | None:
    m = re.search(r"<h3>Analogies</h3>(.*?)</figure>", page, re.S)
    return None if m is None else m.group(1)


@pytest.mark.parametrize("kind", ["cvae", "m2"])
def test_the_report_of_a_labelled_run_shows_its_analogies(runs, kind, tmp_path):
    page = build_report(runs / kind)
    card = _analogies_card(page)
    assert card is not None
    uri = re.search(r'<img src="data:image/png;base64,([^"]*)"', card).group(1)
    o = open_run(str(runs / kind))
    want = analogies_figure(o.model, o.split("test"), tmp_path / "want.png", seed=0)
    assert base64.b64decode(uri) == want.read_bytes()  # 10 rows drawn with the report's seed
    at = "its own label" if kind == "cvae" else "its classifier's label"
    assert f"the mean of q(z|x,y) at {at}" in html.unescape(card)
    # beside the samples, in the first row of pictures
    pictures = page.split("<h2>Pictures</h2>")[1]
    first = pictures.split('<div class="cols">')[1]
    assert "<h3>Samples</h3>" in first and "<h3>Analogies</h3>" in first


def test_the_report_of_an_unlabelled_run_has_no_analogies(runs):
    page = build_report(runs / "vae")
    assert _analogies_card(page) is None and "Analogies" not in page and "figure 1" not in page


@pytest.mark.parametrize("kind", ["cvae", "m2"])
def test_vaelab_figures_draws_a_labelled_runs_analogies_with_its_seed(runs, kind, tmp_path):
    path = runs / kind / "figures" / "analogies.png"
    path.unlink(missing_ok=True)  # the end of `vaelab train` drew it too
    assert main(["figures", str(runs / kind), "--seed", "2", "--quiet"]) == 0
    o = open_run(str(runs / kind))
    want = analogies_figure(o.model, o.split("test"), tmp_path / "want.png", seed=2)
    assert path.read_bytes() == want.read_bytes()


def test_vaelab_figures_draws_no_analogies_for_an_unlabelled_run(runs, capsys):
    assert main(["figures", str(runs / "vae")]) == 0
    assert not (runs / "vae" / "figures" / "analogies.png").exists()
    out = capsys.readouterr().out.splitlines()
    assert not [line for line in out if "analogies.png" in line or line.startswith("not drawn")]
