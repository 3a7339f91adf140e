"""The explorer's label for every model that takes one (cvae, m2, M1+M2 = m2 with model.features, and adgm when
registered), read through the model contract: /api/runs gives a run its label exactly when
`capabilities(model).labelled`, /api/decode draws z at each label as the model's own decode does, the
analogies work on each, and the page keeps the label selector under the latent pad, hidden until a run takes
a label."""

from __future__ import annotations

import io
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.commands.common import open_run
from vaelab.models.protocol import capabilities
from vaelab.models.registry import MODELS, model_config
from vaelab.serve import create_app
from vaelab.train import train
from vaelab.viz.analogies import analogies

from vaelab_testing import small_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns that it prefers httpx2 to httpx
    from fastapi.testclient import TestClient

STATIC = Path(__file__).parents[2] / "src" / "vaelab" / "serve" / "static"
LABELLED = ["cvae", "m2", "m1+m2"] + (["adgm"] if "adgm" in MODELS else [])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A folder of tiny runs: a VAE (also M1+M2's M1) and every labelled kind."""
    root = tmp_path_factory.mktemp("labels") / "runs"
    tiny = {"model.hidden": (32,), "model.latent_dim": 2, "train.epochs": 1}
    kinds = {
        "vae": ("vae", {}),
        "cvae": ("cvae", {}),
        "m2": ("m2", {"data.labelled": 50}),
        "m1+m2": ("m2", {"data.labelled": 50, "model.features": str(root / "vae")}),
        "adgm": ("adgm", {"data.labelled": 50, "model.extra": {"aux_dim": 2}}),
    }
    for run in ["vae", *LABELLED]:
        name, flat = kinds[run]
        train(model_config(name, small_config()).replace(**{**tiny, **flat}), out=root / run)
    return root


@pytest.fixture(scope="module")
def models(runs):
    return {name: open_run(str(runs / name)).model for name in ["vae", *LABELLED]}


@pytest.fixture(scope="module")
def client(runs):
    return TestClient(create_app(runs))


def png_array(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def test_a_run_has_a_label_exactly_when_its_model_takes_one(client, models):
    listed = {r["name"]: r["capabilities"] for r in client.get("/api/runs").json()["runs"]}
    assert sorted(listed) == sorted(models)
    for name, model in models.items():
        caps = capabilities(model)
        want = (
            {"classes": caps.num_classes, "default": 0, "encode": caps.label_for_encode}
            if caps.labelled
            else None
        )
        assert listed[name]["label"] == want, name
        assert listed[name]["needs_label"] == caps.labelled
    assert listed["m1+m2"]["label"]["encode"] == "optional"  # a classifier gives encode its label


@pytest.mark.parametrize("name", LABELLED)
def test_each_label_decodes_as_the_models_own_decode(client, models, name):
    z = torch.linspace(-1.0, 1.3, capabilities(models[name]).latent_dim)
    with torch.no_grad():
        means = [models[name].decode(z[None], torch.tensor([y])).mean[0] for y in range(10)]
    for y in range(10):
        r = client.post("/api/decode", json={"run": name, "z": z.tolist(), "y": y})
        assert r.status_code == 200 and r.headers["x-vaelab-label"] == str(y)
        assert np.array_equal(png_array(r.content), as_uint8(means[y][0])), (name, y)
    assert max(float((m - means[0]).abs().max()) for m in means[1:]) > 0  # the label reaches the decoder


@pytest.mark.parametrize("name", LABELLED)
def test_every_labelled_kind_draws_analogies(runs, models, name):
    """The figure's cells through the contract alone, M1+M2 and the auxiliary model included."""
    model, test = models[name], open_run(str(runs / name)).split("test")
    x, y = test.batch(slice(0, 3)), test.labels_at(slice(0, 3))
    a = analogies(model, x, y)
    with torch.no_grad():
        at = y if capabilities(model).conditional else model.classify(x).probs.argmax(-1)
        z = model.encode(x, at).mean
        assert torch.equal(a.labels, at)
        for k in (0, 4, 9):
            torch.testing.assert_close(
                a.images[:, k], model.decode(z, torch.full_like(at, k)).mean.clamp(0, 1), rtol=0, atol=1e-6
            )


class Tree(HTMLParser):
    """For each element with an id: the ids (or else the classes) of the elements around it, and whether it is
    hidden."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.stack: list[tuple[str, str]] = []
        self.ancestors: dict[str, list[str]] = {}
        self.hidden: dict[str, bool] = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ancestors[a["id"]] = [name for _, name in self.stack]
            self.hidden[a["id"]] = "hidden" in a
        if tag not in ("input", "img", "meta", "link", "br", "hr"):  # void elements have no end tag
            self.stack.append((tag, a.get("id") or a.get("class") or tag))

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass


def test_the_label_selector_sits_under_the_pad_and_starts_hidden():
    page = Tree((STATIC / "index.html").read_text(encoding="utf-8"))
    assert "card pad-card" in page.ancestors["pad"]
    assert "card pad-card" in page.ancestors["label-pick"] and "label-pick" in page.ancestors["label"]
    assert page.hidden["label-pick"] and not page.hidden["pad"]  # app.js shows it for a labelled run only
    assert "card pad-card" not in page.ancestors["decoded"]  # beside the pad, not in the Decoded card
