"""`vaelab report`: one self-contained HTML file (every image embedded, nothing fetched), with the config,
curves, pictures, and whatever parts of eval.json exist, read defensively."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main
from vaelab.config import Config
from vaelab.errors import ConfigError
from vaelab.train import train
from vaelab.viz.report import build_report, write_report

from vaelab_testing import REPORT_PICTURE_HEADINGS, TINY_TRAIN, assert_report_cards_show

EVAL = {  # the shape `vaelab eval` writes (abridged)
    "split": "test",
    "seed": 0,
    "device": "cpu",
    "run": "runs/vae",
    "checkpoint": "runs/vae/checkpoints/best.pt",
    "model": "vae",
    "data": "digits",
    "binarize": "dynamic",
    "epoch": 2,
    "num_images": 300,
    "elbo": {"estimate": -31.52, "stderr": 0.41, "rec": -27.1, "kl": 4.42},
    "importance": {
        "num_samples": 1000,
        "log_px": -29.87,
        "stderr": 0.38,
        "nll": 29.87,
        "bits_per_dim": 0.6733,
        "ess_mean": 41.2,
        "ess_min": 3.5,
        "iwae_curve": {
            "1": {"log_px": -31.52, "stderr": 0.41},
            "5": {"log_px": -30.61, "stderr": 0.4},
            "50": {"log_px": -30.05, "stderr": 0.39},
            "1000": {"log_px": -29.87, "stderr": 0.38},
        },
    },
    "ais": {
        "steps": 1000,
        "chains": 16,
        "leapfrog": 10,
        "log_px": -29.8,
        "stderr": 0.37,
        "nll": 29.8,
        "bits_per_dim": 0.6718,
        "acceptance": 0.71,
        "per_datum": [-29.0] * 300,
    },
    "bdmc": {"num_data": 20, "lower": -41.27, "upper": -41.26, "gap": 0.01, "gap_stderr": 0.07},
    "decomposition": {
        "rec": -27.1,
        "rec_stderr": 0.14,
        "kl": 4.42,
        "elbo": -31.52,
        "free_energy_elbo": -31.5,
        "gap": 1.65,
        "gap_stderr": 0.05,
        "kl_per_dim": [2.31, 2.11],
        "active_units": 2,
        "mutual_information": 3.9,
    },
    "seconds": 12.3,
    "versions": {"torch": "2.13.0+cpu"},
}


def small_config(**flat) -> Config:
    """sklearn's 8x8 digits, a 32-unit MLP, a 2-D latent space: trains in about a second.

    (Defined here rather than imported from tests/conftest.py: another folder's conftest module can
    shadow that name when the whole suite runs.)
    """
    base = {
        "data.name": "digits",
        "model.hidden": (32,),
        "model.latent_dim": 2,
        "train.epochs": 2,
        "train.batch_size": 64,
        "train.progress": False,
        "train.threads": 1,
    }
    return Config().replace(**{**base, **flat})


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
        if tag in ("link", "iframe", "object", "embed") or (tag == "script" and "src" in a):
            self.external.append(tag)  # an inline script (the label selector's) fetches nothing
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
    root = tmp_path_factory.mktemp("report")
    train(small_config(), out=root / "vae")
    train(small_config(**{"model.name": "autoencoder"}), out=root / "ae")
    return root


def test_report_is_one_self_contained_file(runs, tmp_path, capsys):
    """One HTML file with nothing fetched, whose every card shows the figure its heading names: the same
    pixels as that figure drawn directly with the report's seed (0)."""
    from vaelab.commands.common import open_run
    from vaelab.viz.curves import curves_title
    from vaelab.viz.figureset import draw_figures

    run = tmp_path / "vae"
    shutil.copytree(runs / "vae", run)
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run / 'report.html'}"
    text = (run / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    assert page.external == []
    assert len(page.images) == 6  # curves + samples, reconstructions, manifold, interpolations, latents
    o = open_run(str(run))
    history = o.run.read_metrics()
    drawn, skipped = draw_figures(o.model, tmp_path / "direct", o.split("test"), None, history, seed=0)
    assert skipped == {}
    figures = {heading: drawn[key] for heading, key in REPORT_PICTURE_HEADINGS.items()}
    assert_report_cards_show(text, {**figures, curves_title(history): drawn["curves"]})
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
        "K = 1,000, ESS mean 41.2, min 3.5",
        "T = 1,000, 16 chains, 10 leapfrog steps, acceptance 0.710",
        "BDMC on 20 simulated images",
        "-41.27 ≤ log p(x) ≤ -41.26",
        "-27.100 ± 0.140",  # the decomposition's values with their standard errors
        "2.13.0+cpu",
    ):
        assert needle in text, needle
    assert "-29.000" not in text  # AIS's per-datum list stays out of the page
    elbo_bpd = 31.52 / (64 * math.log(2))  # bits/dim of the ELBO row, computed from 8x8 pixels
    assert f"{elbo_bpd:.4f}" in text
    assert "active units" in text and "mutual information" in text


def test_partial_and_odd_eval_json_is_shown_not_fatal(runs, tmp_path):
    run = tmp_path / "vae"
    shutil.copytree(runs / "vae", run)
    odd = {
        "elbo": {"estimate": -40.0, "stderr": "n/a", "rec": None, "kl": "<b>bold</b>"},
        "decomposition": {"rec": -35.0, "kl": 5.0, "kl_per_dim": "not a list"},
        "importance": {"iwae_curve": {"x": 1, "10": "NaN", "20": {"stderr": 1}}},
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


def test_an_overflowing_decomposition_is_not_drawn_and_not_fatal(runs, tmp_path):
    run = tmp_path / "vae"
    shutil.copytree(runs / "vae", run)
    (run / "eval.json").write_text(json.dumps({"decomposition": {"rec": -1e308, "kl": 1e308}}))
    page = Page(build_report(run))
    assert len(page.images) == 6  # the run's own pictures; no decomposition chart (rec - kl is -inf)


def test_unreadable_eval_json_becomes_a_note(runs, tmp_path):
    run = tmp_path / "vae"
    shutil.copytree(runs / "vae", run)
    (run / "eval.json").write_text("{not json")
    text = build_report(run)
    assert "eval.json could not be read" in text
    (run / "eval.json").write_text("[1, 2]")
    assert "does not hold a JSON object" in build_report(run)


@pytest.fixture
def chart_axes(monkeypatch):
    """The Axes of every figure made with plt.subplots from now on, in order (they outlive the saved figure)."""
    from vaelab.viz.grids import plt

    made = []
    real = plt.subplots

    def subplots(*args, **kwargs):
        figure, ax = real(*args, **kwargs)
        made.append(ax)
        return figure, ax

    monkeypatch.setattr(plt, "subplots", subplots)
    return made


def test_decomposition_chart_shows_its_parts(tmp_path, chart_axes):
    """Each bar, point and line of the evaluation charts is the eval.json number it stands for: distortion +
    rate and -log p(x) + gap both end at -ELBO, the IWAE points carry ±2 s.e., one KL bar per dimension."""
    from vaelab.viz.evalcharts import decomposition_chart, iwae_chart, kl_per_dim_chart

    dec, imp, ais = EVAL["decomposition"], EVAL["importance"], EVAL["ais"]
    assert decomposition_chart(EVAL, tmp_path / "d.png").is_file()
    # (bar's centre on the y axis, left edge, width): -log p(x) = -(ELBO + gap) = IS's -log p(x) here
    bars = [(p.get_y() + p.get_height() / 2, p.get_x(), p.get_width()) for p in chart_axes[-1].patches]
    nll = -(dec["elbo"] + dec["gap"])
    assert nll == pytest.approx(-imp["log_px"], abs=1e-9)
    expected = [(1, 0, -dec["rec"]), (1, -dec["rec"], dec["kl"]), (0, 0, nll), (0, nll, dec["gap"])]
    np.testing.assert_allclose(bars, expected, rtol=0, atol=1e-9)
    ends = [left + width for _, left, width in bars[1::2]]
    np.testing.assert_allclose(ends, [-dec["elbo"]] * 2, rtol=0, atol=1e-9)

    assert iwae_chart(EVAL, tmp_path / "i.png").is_file()
    ax = chart_axes[-1]
    (errorbar,) = ax.containers
    points, _, (spans,) = errorbar.lines
    ks = sorted(int(k) for k in imp["iwae_curve"])
    log_px = [imp["iwae_curve"][str(k)]["log_px"] for k in ks]
    se = [imp["iwae_curve"][str(k)]["stderr"] for k in ks]
    np.testing.assert_array_equal(points.get_xdata().astype(float), ks)
    np.testing.assert_allclose(points.get_ydata().astype(float), log_px, rtol=0, atol=1e-12)
    expected_spans = [[[k, v - 2 * s], [k, v + 2 * s]] for k, v, s in zip(ks, log_px, se)]
    np.testing.assert_allclose(spans.get_segments(), expected_spans, rtol=0, atol=1e-9)
    levels = {
        line.get_label(): line.get_ydata()[0] for line in ax.lines if not line.get_label().startswith("_")
    }
    assert levels == {"ELBO -31.52": EVAL["elbo"]["estimate"], "AIS -29.80 (±2 s.e.)": ais["log_px"]}
    (band,) = ax.patches  # AIS ± 2 s.e.
    assert (band.get_y(), band.get_height()) == pytest.approx(
        (ais["log_px"] - 2 * ais["stderr"], 4 * ais["stderr"])
    )

    assert kl_per_dim_chart(EVAL, tmp_path / "k.png").is_file()
    ax = chart_axes[-1]
    bars = [(p.get_x() + p.get_width() / 2, p.get_height()) for p in ax.patches]
    np.testing.assert_allclose(bars, list(enumerate(dec["kl_per_dim"])), rtol=0, atol=1e-12)
    assert ax.get_title() == f"active units: {dec['active_units']} of {len(dec['kl_per_dim'])}"

    for draw in (decomposition_chart, iwae_chart, kl_per_dim_chart):
        assert draw({}, tmp_path / "none.png") is None  # nothing to draw from an empty evaluation
    assert not (tmp_path / "none.png").exists()


def test_autoencoder_report_says_it_is_not_generative(runs):
    text = build_report(runs / "ae")
    assert "This model has no prior" in text
    assert len(Page(text).images) == 6


def test_missing_data_leaves_notes_and_the_rest(tmp_path, capsys):
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


def test_a_report_out_that_is_not_an_html_file_is_refused(runs, tmp_path, capsys, one_line_error):
    """It wrote HTML under a .png name; from Python an empty out fell back to RUN/report.html without a word."""
    run = tmp_path / "vae"
    shutil.copytree(runs / "vae", run)
    before = sorted(p.name for p in run.rglob("*"))
    code = main(["report", str(run), "--out", str(tmp_path / "r.png")])
    line = one_line_error(capsys, code, "vaelab report: error:")
    assert line.endswith(f"{tmp_path / 'r.png'}: the report is an HTML page; name a file ending in .html")
    with pytest.raises(ConfigError, match="^'': the report is an HTML page; name a file ending in .html$"):
        write_report(run, "")
    assert sorted(p.name for p in run.rglob("*")) == before and not (tmp_path / "r.png").exists()


CLASS_NAMES = {
    "pixelcnn": "PixelCNN",
    "gan": "GAN",
    "hierarchical": "HierarchicalVAE",
    "cvae": "CVAE",
    "m2": "M2",
}


SAMPLES_CAPTION = {
    "pixelcnn": "Images the model draws itself (ancestral sampling, or its generator fed z ~ p(z)).",
    "gan": "Images the model draws itself (ancestral sampling, or its generator fed z ~ p(z)).",
    "hierarchical": "Images the model draws itself (ancestral sampling, or its generator fed z ~ p(z)).",
    "cvae": "One row per label: along a row only z ~ p(z) changes.",
    "m2": "One row per label: along a row only z ~ p(z) changes.",
}


@pytest.mark.parametrize(
    ("model", "flags"),
    [
        ("pixelcnn", []),
        ("gan", []),
        ("hierarchical", ["--set", "model.extra={h1_dim: 4, h2_hidden: [8]}"]),
        ("cvae", []),
        ("m2", ["--labelled", "30"]),
    ],
)
def test_report_of_every_family_draws_what_applies_and_says_why_not_the_rest(model, flags, tmp_path):
    """`vaelab report` on each family (it crashed on these five): the latent pictures of a model without one
    latent layer (or whose decoder takes a label) become notes; the curves and the samples are drawn."""
    run = tmp_path / model
    assert main(["train", *TINY_TRAIN, "--model", model, *flags, "--out", str(run)]) == 0
    assert main(["report", str(run)]) == 0
    text = (run / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    assert page.external == [] and "Samples" in page.headings
    assert f"{CLASS_NAMES[model]} has no single latent layer to show" in text
    # + the analogies and the manifold at each of the 10 labels (`test_report_labels.py`) of a labelled model
    assert len(page.images) == (13 if model in ("cvae", "m2") else 2)
    # how its samples are drawn; none of them is an autoencoder without a prior (PixelCNN and the
    # hierarchical VAE were called one: their top-level prior is not the one-layer protocol's)
    assert re.search(r"<h3>Samples</h3>.*?<figcaption>([^<]*)", text).group(1) == SAMPLES_CAPTION[model]
    assert "This model has no prior" not in text and "deterministic autoencoder" not in text
    for uri in page.images:
        with decode_png(uri) as im:
            assert im.size[0] > 50 and im.size[1] > 50


def test_an_eval_of_another_epoch_is_flagged_and_kept_out_of_the_headline(runs, tmp_path):
    """eval.json of epoch 1, then the run trained on: the report says its numbers are of another model."""
    run = tmp_path / "vae"
    shutil.copytree(runs / "vae", run)
    assert (
        main(["eval", str(run), "--importance", "8", "--limit", "20", "--quiet", "--checkpoint", "last"]) == 0
    )
    ev = json.loads((run / "eval.json").read_text())
    assert main(["train", "--out", str(run), "--resume", "--epochs", str(ev["epoch"] + 1), "--quiet"]) == 0
    assert main(["report", str(run), "--checkpoint", "last"]) == 0
    text = (run / "report.html").read_text(encoding="utf-8")
    assert f"eval.json scored last.pt at epoch {ev['epoch']}, but this report shows last.pt at epoch" in text
    assert "log p(x)" not in text.split("<h2>")[0]  # the headline, before the first section
    (run / "eval.json").unlink()
    assert (
        main(["eval", str(run), "--importance", "8", "--limit", "20", "--quiet", "--checkpoint", "last"]) == 0
    )
    assert main(["report", str(run), "--checkpoint", "last"]) == 0
    fresh = (run / "report.html").read_text(encoding="utf-8")
    assert "eval.json scored" not in fresh and "log p(x)" in fresh.split("<h2>")[0]


def test_the_config_panel_reads_like_config_json_and_shows_only_what_applies(runs):
    """Python's None/True became null/true, and a named data set's image_size/channels (which only an image
    folder uses) are left out (issue 22, item 22)."""
    text = build_report(runs / "vae")
    config = text.split("<h2>Config</h2>")[1]
    data = re.search(r'<h3>data</h3><table class="kv">(.*?)</table>', config).group(1)
    rows = dict(re.findall(r"<tr><th>([^<]*)</th><td>([^<]*)</td></tr>", data))
    assert rows["name"] == "digits" and rows["data_dir"] == "null" and rows["download"] == "true"
    assert "image_size" not in rows and "channels" not in rows
    assert re.search(r"<th>dreg</th><td>false</td>", config)
    assert not re.search(r"<td>(None|True|False)</td>", config)


def test_an_autoencoder_report_speaks_of_codes_not_posterior_means(runs):
    """An autoencoder has no prior, so no posterior: its captions say "codes" (issue 22, item 22)."""
    ae = build_report(runs / "ae")
    assert "posterior means" not in ae
    assert "beside the decoded means of their codes." in ae
    assert "between the codes of pairs of test images" in ae
    vae = build_report(runs / "vae")
    assert "beside the decoded means of their posterior means." in vae
