"""A table run (csv:) in `vaelab report` and `vaelab serve`: the report shows columns.png and marginals.png in
place of the image figures, with bits/dim per column; the explorer, made for pictures, says in one line that a
table run is not one of its runs (the whole command for a single run, a skipped entry in a folder of runs, 409
for a request naming it)."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.serve import create_app
from vaelab.train import train

from vaelab_testing import small_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns that it prefers httpx2 to httpx
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A folder with a table run (3 columns: continuous, binary, 4-level categorical) and an image run."""
    root = tmp_path_factory.mktemp("tables") / "runs"
    rng = np.random.default_rng(0)
    n = 200
    x = rng.normal(0, 1, n)
    frame = pd.DataFrame(
        {
            "x": 10 + 3 * x,
            "flag": np.where(x + rng.normal(0, 0.5, n) > 0, "yes", "no"),
            "level": rng.choice(["a", "b", "c", "d"], n),
        }
    )
    path = root.parent / "t.csv"
    frame.to_csv(path, index=False)
    args = ["train", "--data", f"csv:{path}", "--hidden", "16", "--latent-dim", "2", "--epochs", "3"]
    assert main([*args, "--quiet", "--threads", "1", "--out", str(root / "table")]) == 0
    train(small_config(), out=root / "digits")
    return root


def _embedded(page: str, title: str) -> np.ndarray:
    """The pixels of the PNG in the figure card titled `title`."""
    card = re.search(rf"<h3>{title}</h3><img src=\"data:image/png;base64,([^\"]*)\"", page)
    assert card, f"no {title} figure on the page"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(card.group(1)))))


def test_the_report_of_a_table_run_shows_columns_and_marginals(runs, capsys):
    run = runs / "table"
    assert main(["eval", str(run), "--importance", "20", "--quiet"]) == 0
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    # the same pictures `vaelab train` drew into RUN/figures (columns: posterior means; marginals: seed 0)
    for title, name in (("Columns", "columns"), ("Marginals", "marginals")):
        drawn = np.asarray(Image.open(run / "figures" / f"{name}.png"))
        np.testing.assert_array_equal(_embedded(page, title), drawn)
    assert "Samples, reconstructions, manifold, interpolations: a table's rows are not pictures" in page
    for image_title in ("Samples", "Reconstructions", "Latent manifold", "Interpolations"):
        assert f"<h3>{image_title}</h3>" not in page
    assert "table rows of 3 columns" in page and "binarization" not in page.split("</header>")[0]
    ev = json.loads((run / "eval.json").read_text())
    bpd = -ev["importance"]["log_px"] / (3 * math.log(2))  # per column: 3, not the 2 x 6 encoded numbers
    assert ev["importance"]["bits_per_dim"] == pytest.approx(bpd, rel=1e-12)
    assert f"{bpd:.4f}" in page or f"{bpd:.3f}" in page


def test_serve_says_in_one_line_that_the_explorer_shows_image_runs(runs, capsys, one_line_error):
    with pytest.raises(VaelabError) as e:
        create_app(runs / "table")
    msg = str(e.value)
    assert "is a table run (csv:" in msg and "the explorer shows image runs" in msg and "\n" not in msg
    code = main(["serve", str(runs / "table"), "--port", "0"])
    one_line_error(capsys, code, "is a table run", "vaelab report RUN shows a table's columns and marginals")
    client = TestClient(create_app(runs))
    listing = client.get("/api/runs").json()
    assert [r["name"] for r in listing["runs"]] == ["digits"]
    (skipped,) = listing["skipped"]
    assert skipped["name"] == "table" and skipped["reason"].startswith(
        "it is a table run: the explorer shows"
    )
    r = client.get("/api/latents", params={"run": "table"})
    assert r.status_code == 409 and "is a table run" in r.json()["detail"]
    assert client.get("/api/latents", params={"run": "digits"}).status_code == 200
