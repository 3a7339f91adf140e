"""`vaelab report`: one self-contained HTML file (every image embedded, nothing fetched), with the config,
curves, pictures, and whatever parts of eval.json exist, read defensively."""

from __future__ import annotations

import base64
import io
import json
import math
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main
from vaelab.train import train
from vaelab.viz.report import build_report, write_report

EVAL = {
    "run": "runs/vae",
    "checkpoint": "best.pt",
    "split": "test",
    "num_images": 300,
    "seed": 0,
    "seconds": 12.3,
    "elbo": {"estimate": -31.52, "stderr": 0.41, "rec": -27.1, "kl": 4.42},
    "importance": {
        "num_samples": 1000,
        "log_px": -29.87,
        "stderr": 0.38,
        "nll": 29.87,
        "bits_per_dim": 0.6733,
        "ess_mean": 41.2,
        "iwae_curve": {"1": -31.52, "5": -30.61, "50": -30.05, "1000": -29.87},
    },
    "ais": {
        "steps": 1000,
        "chains": 16,
        "log_px": -29.8,
        "stderr": 0.37,
        "nll": 29.8,
        "bits_per_dim": 0.6718,
        "acceptance": 0.71,
    },
    "bdmc": {"lower": -29.8, "upper": -29.71, "gap": 0.09},
    "decomposition": {
        "rec": -27.1,
        "kl": 4.42,
        "elbo": -31.52,
        "free_energy_elbo": -31.52,
        "gap": 1.65,
        "kl_per_dim": [2.31, 2.11],
        "active_units": 2,
        "mutual_information": 3.9,
    },
}


class Page(HTMLParser):
    """The <img> sources, headings and every external reference of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[str] = []
        self.headings: list[str] = []
        self.external: list[str] = []
        self._heading = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag in ("script", "link", "iframe", "object", "embed"):
            self.external.append(tag)
        for key in ("href", "src"):
            if (a.get(key) or "").startswith(("http:", "https:", "//", "file:")):
                self.external.append(a[key])
        self._heading = tag in ("h2", "h3")

    def handle_data(self, data):
        if self._heading and data.strip():
            self.headings.append(data.strip())
        self._heading = False


def decode_png(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,"), uri[:40]
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from conftest import small_config

    root = tmp_path_factory.mktemp("report")
    train(small_config(), out=root / "vae")
    train(small_config(**{"model.name": "autoencoder"}), out=root / "ae")
    return root


def test_report_is_one_self_contained_file(runs, tmp_path, capsys):
    run = tmp_path / "vae"
    shutil.copytree(runs / "vae", run)
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run / 'report.html'}"
    text = (run / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    assert page.external == []
    assert len(page.images) == 6  # curves + samples, reconstructions, manifold, interpolations, latents
    for uri in page.images:
        with decode_png(uri) as im:
            assert im.size[0] > 100 and im.size[1] > 100
    for heading in ("Training curves", "Pictures", "Config", "Samples", "Latent manifold", "Latent scatter"):
        assert heading in page.headings
    assert "Evaluation" not in page.headings  # no eval.json yet
    assert "digits" in text and "adam" in text and "[32]" in text
    assert "<script" not in text.lower()


def test_eval_json_gives_the_table_and_charts(runs, tmp_path):
    run = tmp_path / "vae"
    shutil.copytree(runs / "vae", run)
    (run / "eval.json").write_text(json.dumps(EVAL))
    text = write_report(run, tmp_path / "out" / "r.html").read_text(encoding="utf-8")
    page = Page(text)
    assert "Evaluation" in page.headings
    assert len(page.images) == 9  # + decomposition, IWAE curve, KL per dimension
    for needle in (
        "-29.87",
        "0.6733",
        "K = 1,000",
        "T = 1,000 steps, 16 chains",
        "-29.80 ≤ log p(x) ≤ -29.71",
    ):
        assert needle in text, needle
    elbo_bpd = 31.52 / (64 * math.log(2))  # bits/dim of the ELBO row, computed from 8x8 pixels
    assert f"{elbo_bpd:.4f}" in text
    assert "active units" in text and "mutual information" in text


def test_partial_and_odd_eval_json_is_shown_not_fatal(runs, tmp_path):
    run = tmp_path / "vae"
    shutil.copytree(runs / "vae", run)
    odd = {
        "elbo": {"estimate": -40.0, "stderr": "n/a", "rec": None, "kl": "<b>bold</b>"},
        "decomposition": {"rec": -35.0, "kl": 5.0, "kl_per_dim": "not a list"},
        "importance": {"iwae_curve": {"x": 1, "10": "NaN"}},
        "note": "<script>alert(1)</script>",
    }
    (run / "eval.json").write_text(json.dumps(odd))
    text = build_report(run)
    page = Page(text)
    assert page.external == []
    assert len(page.images) == 7  # only the decomposition chart is drawable
    assert "&lt;b&gt;bold&lt;/b&gt;" in text and "<b>bold" not in text
    assert "&lt;script&gt;" in text
    assert "n/a" in text and f"{40 / (64 * math.log(2)):.4f}" in text


def test_unreadable_eval_json_becomes_a_note(runs, tmp_path):
    run = tmp_path / "vae"
    shutil.copytree(runs / "vae", run)
    (run / "eval.json").write_text("{not json")
    text = build_report(run)
    assert "eval.json could not be read" in text
    (run / "eval.json").write_text("[1, 2]")
    assert "does not hold a JSON object" in build_report(run)


def test_decomposition_chart_shows_its_parts(tmp_path):
    from vaelab.viz.evalcharts import decomposition_chart, iwae_chart, kl_per_dim_chart

    for draw in (decomposition_chart, iwae_chart, kl_per_dim_chart):
        path = draw(EVAL, tmp_path / f"{draw.__name__}.png")
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L"))
        assert arr.std() > 10  # a drawn chart, not a blank canvas
        assert draw({}, tmp_path / "none.png") is None  # nothing to draw from an empty evaluation


def test_autoencoder_report_says_it_is_not_generative(runs):
    text = build_report(runs / "ae")
    assert "This model has no prior" in text
    assert len(Page(text).images) == 6


def test_missing_data_leaves_notes_and_the_rest(tmp_path, capsys):
    from conftest import small_config

    folder = tmp_path / "pics"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    cfg = small_config(
        **{"data.name": f"folder:{folder}", "data.image_size": 8, "model.likelihood": "continuous-bernoulli"}
    )
    cfg = cfg.replace(**{"data.binarize": "none", "data.valid_fraction": 0.0})
    train(cfg, out=tmp_path / "run")
    shutil.rmtree(folder)
    assert main(["report", str(tmp_path / "run")]) == 0
    text = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "the run&#x27;s test data could not be loaded" in text
    assert len(Page(text).images) == 2  # curves and prior samples need no data


def test_report_of_nothing_is_one_line(tmp_path, capsys, one_line_error):
    one_line_error(capsys, main(["report", str(tmp_path / "nope")]), "vaelab report: error:", "nope")
