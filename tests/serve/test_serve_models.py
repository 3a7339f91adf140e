"""The explorer over a folder of every kind of run `vaelab train --model NAME` makes: each run is listed with
what it can do, decodes wherever the model maps a z to an image (checked against the model's own decode),
and refuses what it cannot do with 409 and a one-line reason."""

from __future__ import annotations

import io
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.commands.common import open_run
from vaelab.distributions.sampling import sample
from vaelab.models.registry import model_config
from vaelab.serve import create_app
from vaelab.train import train

from vaelab_testing import small_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns that it prefers httpx2 to httpx
    from fastapi.testclient import TestClient

# Tiny versions of each model (8x8 digits, one epoch): what matters here is the protocol, not the fit.
KINDS = {
    "vae": {},
    "autoencoder": {},
    "iwae": {},
    "vampprior": {"model.extra": {"pseudo_inputs": 10}},
    "hierarchical": {"model.extra": {"h1_dim": 4, "h2_hidden": [8]}},
    "cvae": {},
    "m2": {"data.labelled": 50},
    "pixelcnn": {"model.extra": {"channels": 8, "blocks": 1, "first_kernel": 3}},
    "gan": {"model.body": "conv", "model.conv_channels": (8, 16), "model.latent_dim": 3},
}
# decode, encode, sample, latent_dim, needs_label
CAN = {
    "vae": (True, True, True, 2, False),
    "autoencoder": (True, True, True, 2, False),
    "iwae": (True, True, True, 2, False),
    "vampprior": (True, True, True, 2, False),
    "hierarchical": (True, False, True, 2, False),
    "cvae": (True, True, True, 2, True),
    "m2": (True, True, True, 2, True),
    "pixelcnn": (False, False, True, None, False),
    "gan": (True, False, True, 3, False),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A folder with one tiny run of every model kind."""
    root = tmp_path_factory.mktemp("kinds") / "runs"
    for name, flat in KINDS.items():
        base = model_config(name, small_config(**{"train.epochs": 1}))
        train(base.replace(**{"model.hidden": (32,), "model.latent_dim": 2, **flat}), out=root / name)
    return root


@pytest.fixture(scope="module")
def client(runs):
    return TestClient(create_app(runs))


@pytest.fixture(scope="module")
def models(runs):
    return {name: open_run(str(runs / name)).model for name in KINDS}


@pytest.fixture(scope="module")
def listing(client):
    return {r["name"]: r for r in client.get("/api/runs").json()["runs"]}


def png_array(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return np.asarray(im)


def uri_array(uri: str) -> np.ndarray:
    import base64

    assert uri.startswith("data:image/png;base64,")
    return png_array(base64.b64decode(uri.split(",", 1)[1]))


def as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def png_of(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def upload(client, run: str, **form):
    grey = np.linspace(0, 255, 64).reshape(8, 8).astype(np.uint8)
    files = {"file": ("g.png", png_of(grey), "image/png")}
    return client.post("/api/encode", data={"run": run, **form}, files=files)


def test_a_folder_of_every_kind_serves_and_lists_what_each_can_do(listing):
    assert sorted(listing) == sorted(KINDS)
    for name, (decode, encode, samples, dim, needs_label) in CAN.items():
        entry = listing[name]
        assert "error" not in entry, entry
        caps = entry["capabilities"]
        got = (caps["decode"], caps["encode"], caps["sample"], caps["latent_dim"], caps["needs_label"])
        assert got == (decode, encode, samples, dim, needs_label), name
        assert caps["interpolate"] == decode and caps["latents"] == encode
        assert entry["latent_dim"] == dim and entry["model"] == name
        for action in ("decode", "encode", "sample", "interpolate", "latents"):
            assert (action in caps["why_not"]) == (not caps[action]), (name, action)
        assert all("\n" not in why and why for why in caps["why_not"].values())
    assert listing["cvae"]["capabilities"]["label"] == {"classes": 10, "default": 0, "encode": "required"}
    assert listing["m2"]["capabilities"]["label"] == {"classes": 10, "default": 0, "encode": "optional"}
    assert listing["vae"]["capabilities"]["label"] is None
    assert listing["autoencoder"]["generative"] is False
    assert all(listing[n]["generative"] for n in KINDS if n != "autoencoder")


@pytest.mark.parametrize("name", [n for n, can in CAN.items() if can[0]])
def test_decode_is_the_models_own_picture_of_z(client, models, name):
    model = models[name]
    d = CAN[name][3]
    z = torch.linspace(-1.5, 1.2, d)
    r = client.post("/api/decode", json={"run": name, "z": z.tolist()})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    got = png_array(r.content)
    assert got.shape == (8, 8) and got.dtype == np.uint8
    with torch.no_grad():
        if name == "hierarchical":
            want = model.mean_image(z[None])[0, 0]
        elif name == "gan":
            want = model.images(z[None])[0, 0]  # G(z) itself, not through decode
        elif CAN[name][4]:
            want = model.decode(z[None], torch.tensor([0])).mean[0, 0]  # the stated default label
        else:
            want = model.decode(z[None]).mean[0, 0]
    assert np.array_equal(got, as_uint8(want))
    assert ("x-vaelab-label" in r.headers) == CAN[name][4]


def test_the_hierarchical_picture_holds_h1_at_its_conditional_mean(models):
    from vaelab.models.hierarchical import gaussian
    from vaelab.models.vae import decode_with

    m = models["hierarchical"]
    h2 = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h1 = gaussian(m.p1(h2)).mean
        want = decode_with(m.decoder, m.likelihood, h1).mean.clamp(0, 1)
    torch.testing.assert_close(m.mean_image(h2), want)


@pytest.mark.parametrize("name", ["cvae", "m2"])
def test_labelled_runs_decode_at_the_label_asked_for(client, models, name):
    z = [0.4, -0.7]
    pics = []
    for y in range(10):
        r = client.post("/api/decode", json={"run": name, "z": z, "y": y})
        assert r.status_code == 200 and r.headers["x-vaelab-label"] == str(y)
        with torch.no_grad():
            want = models[name].decode(torch.tensor([z]), torch.tensor([y])).mean[0, 0]
        assert np.array_equal(png_array(r.content), as_uint8(want))
        pics.append(png_array(r.content))
    assert any(not np.array_equal(pics[0], p) for p in pics[1:])  # the label reaches the decoder
    default = client.post("/api/decode", json={"run": name, "z": z})
    assert default.headers["x-vaelab-label"] == "0" and np.array_equal(png_array(default.content), pics[0])


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"run": "cvae", "z": [0, 0], "y": 10}, "y must be a label 0..9 for run 'cvae', got 10"),
        ({"run": "m2", "z": [0, 0], "y": -1}, "greater than or equal to 0"),
        ({"run": "cvae", "z": [0, 0], "y": "3"}, "valid integer"),
        ({"run": "cvae", "z": [0, 0], "y": 1.5}, "valid integer"),
        ({"run": "cvae", "z": [0, 0], "y": True}, "valid integer"),
        ({"run": "vae", "z": [0, 0], "y": 1}, "run 'vae' takes no label y"),
        ({"run": "gan", "z": [0, 0, 0], "y": 1}, "run 'gan' takes no label y"),
    ],
)
def test_a_label_that_does_not_fit_is_422(client, body, needle):
    r = client.post("/api/decode", json=body)
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]


CANNOT = [
    ("pixelcnn", "decode", "no latent variable", "no z to decode"),
    ("pixelcnn", "interpolate", "no latent variable", "no z to decode"),
    ("pixelcnn", "encode", "no latent variable", "no posterior"),
    ("pixelcnn", "latents", "no latent variable", "no posterior"),
    ("gan", "encode", "has no encoder", "q(z|x)"),
    ("gan", "latents", "has no encoder", "q(z|x)"),
    ("hierarchical", "encode", "two latent layers", "not one Gaussian"),
    ("hierarchical", "latents", "two latent layers", "not one Gaussian"),
]


def _ask(client, name: str, action: str):
    if action == "decode":
        return client.post("/api/decode", json={"run": name, "z": [0.0, 0.0]})
    if action == "interpolate":
        return client.post("/api/interpolate", json={"run": name, "z0": [0.0], "z1": [1.0]})
    if action == "latents":
        return client.get("/api/latents", params={"run": name})
    return upload(client, name)


@pytest.mark.parametrize(("name", "action", "needle", "why"), CANNOT)
def test_what_a_run_cannot_do_is_409_with_one_line_saying_why(client, listing, name, action, needle, why):
    r = _ask(client, name, action)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert needle in detail and why in detail and "\n" not in detail
    assert detail == listing[name]["capabilities"]["why_not"][action]


def test_cvae_encodes_at_the_given_label_and_asks_for_one(client, models):
    r = upload(client, "cvae")
    assert r.status_code == 422
    assert r.json()["detail"] == "run 'cvae' encodes q(z|x,y): give the image's label y (0..9)"
    assert upload(client, "cvae", y="10").status_code == 422
    assert upload(client, "cvae", y="three").status_code == 422
    body = upload(client, "cvae", y="3").json()
    x = torch.tensor(uri_array(body["input"]) / 255.0, dtype=torch.float32)[None, None]
    with torch.no_grad():
        q = models["cvae"].encode(x, torch.tensor([3]))
        rec = models["cvae"].decode(q.mean, torch.tensor([3])).mean[0, 0]
    assert (body["y"], body["label_source"]) == (3, "given")
    assert np.allclose(body["mean"], q.mean[0].numpy(), atol=1e-5)
    assert np.allclose(body["std"], q.stddev[0].numpy(), atol=1e-5)
    assert np.abs(uri_array(body["reconstruction"]).astype(int) - as_uint8(rec).astype(int)).max() <= 1


def test_m2_encodes_at_its_classifiers_label_unless_given_one(client, models):
    m = models["m2"]
    body = upload(client, "m2").json()
    x = torch.tensor(uri_array(body["input"]) / 255.0, dtype=torch.float32)[None, None]
    with torch.no_grad():
        probs = m.classify(x).probs[0]
        k = int(probs.argmax())
        q = m.encode(x, torch.tensor([k]))
    assert body["y"] == k and body["label_source"].startswith("predicted: argmax q(y|x)")
    assert f"{float(probs[k]):.3f}" in body["label_source"]
    assert np.allclose(body["mean"], q.mean[0].numpy(), atol=1e-5)
    given = upload(client, "m2", y="7").json()
    with torch.no_grad():
        q7 = m.encode(x, torch.tensor([7]))
    assert given["y"] == 7 and given["label_source"] == "given"
    assert np.allclose(given["mean"], q7.mean[0].numpy(), atol=1e-5)
    assert upload(client, "vae", y="1").status_code == 422


@pytest.mark.parametrize("name", ["cvae", "m2"])
def test_labelled_runs_codes_are_q_z_given_x_and_the_true_label(client, runs, name):
    body = client.get("/api/latents", params={"run": name}).json()
    o = open_run(str(runs / name))
    test = o.split("test")
    with torch.no_grad():
        want = o.model.encode(test.batch(slice(0, len(test))), test.labels).mean.numpy()
    got = np.array(body["codes"])
    assert got.shape == want.shape == (len(test), 2)
    assert np.abs(got - want).max() <= 5e-5
    assert body["labels"] == test.labels.tolist()
    assert "own label" in body["codes_of"] and body["note"] is None


def test_samples_are_what_each_model_draws(client, models):
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    pix = client.post("/api/sample", json={"run": "pixelcnn", "n": 3, "seed": 4}).json()
    assert pix["z"] is None and pix["y"] is None and "pixel by pixel" in pix["source"]
    want = models["pixelcnn"].generate(3, g())
    got = np.stack([uri_array(u) for u in pix["images"]])
    assert got.shape == (3, 8, 8) and set(np.unique(got)) <= {0, 255}
    assert np.array_equal(got, as_uint8(want[:, 0]))

    hier = client.post("/api/sample", json={"run": "hierarchical", "n": 3, "seed": 4}).json()
    assert hier["z"] is None and "ancestral" in hier["source"]
    want = models["hierarchical"].generate(3, g())
    assert np.array_equal(np.stack([uri_array(u) for u in hier["images"]]), as_uint8(want[:, 0]))

    gan = client.post("/api/sample", json={"run": "gan", "n": 3, "seed": 4}).json()
    z = sample(models["gan"].prior(), (3,), g())
    assert np.allclose(gan["z"], z.numpy(), atol=1e-6)
    with torch.no_grad():
        want = models["gan"].images(z)
    assert np.array_equal(np.stack([uri_array(u) for u in gan["images"]]), as_uint8(want[:, 0]))

    cvae = client.post("/api/sample", json={"run": "cvae", "n": 12, "seed": 4}).json()
    assert cvae["y"] == [k % 10 for k in range(12)] and "labels 0, 1, 2" in cvae["source"]
    fives = client.post("/api/sample", json={"run": "cvae", "n": 4, "seed": 4, "y": 5}).json()
    assert fives["y"] == [5] * 4
    z = torch.tensor(fives["z"])
    with torch.no_grad():
        want = models["cvae"].decode(z, torch.tensor(5)).mean
    assert np.array_equal(np.stack([uri_array(u) for u in fives["images"]]), as_uint8(want[:, 0]))
    assert client.post("/api/sample", json={"run": "cvae", "n": 2, "y": 11}).status_code == 422
    assert client.post("/api/sample", json={"run": "pixelcnn", "n": 2, "y": 1}).status_code == 422


def test_interpolation_for_a_gan_and_at_a_label(client, models):
    gan = client.post("/api/interpolate", json={"run": "gan", "z0": [0, 0, 0], "z1": [1, 2, 3], "steps": 4})
    assert gan.status_code == 200
    z = torch.tensor(gan.json()["z"])
    with torch.no_grad():
        want = models["gan"].images(z)
    assert np.array_equal(np.stack([uri_array(u) for u in gan.json()["images"]]), as_uint8(want[:, 0]))
    body = client.post(
        "/api/interpolate", json={"run": "m2", "z0": [0, 0], "z1": [1, 1], "steps": 3, "y": 8}
    ).json()
    assert body["y"] == 8
    with torch.no_grad():
        want = models["m2"].decode(torch.tensor(body["z"]), torch.tensor(8)).mean
    assert np.array_equal(np.stack([uri_array(u) for u in body["images"]]), as_uint8(want[:, 0]))


def test_a_run_that_fails_to_load_is_listed_with_its_error_and_the_others_serve(runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs / "gan", root / "gan")
    (root / "broken" / "checkpoints").mkdir(parents=True)
    (root / "broken" / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    c = TestClient(create_app(root))
    listed = {r["name"]: r for r in c.get("/api/runs").json()["runs"]}
    assert sorted(listed) == ["broken", "gan"]
    assert listed["broken"]["error"] and "\n" not in listed["broken"]["error"]
    assert "capabilities" not in listed["broken"]
    assert listed["gan"]["capabilities"]["decode"] is True
    assert c.post("/api/decode", json={"run": "gan", "z": [0, 0, 0]}).status_code == 200


NODE = shutil.which("node")


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory):
    """What the explorer page shows for every run: app.js run by Node against a live server (fake_dom.js)."""
    if NODE is None:
        pytest.skip("node is not installed: the page's script is not exercised")
    import json
    import subprocess
    import threading
    import time
    from pathlib import Path

    from vaelab.serve import bind, make_server

    png = tmp_path_factory.mktemp("page") / "u.png"
    png.write_bytes(png_of(np.linspace(0, 255, 64).reshape(8, 8).astype(np.uint8)))
    sock = bind("127.0.0.1", 0)
    server = make_server(create_app(runs))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.02)
    here = Path(__file__).parent
    app_js = Path(__file__).parents[2] / "src" / "vaelab" / "serve" / "static" / "app.js"
    try:
        done = subprocess.run(
            [
                NODE,
                str(here / "fake_dom.js"),
                f"http://127.0.0.1:{sock.getsockname()[1]}",
                str(app_js),
                str(png),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_page_disables_what_a_run_cannot_do_and_says_why(page, listing):
    assert sorted(page) == sorted(KINDS)
    for name, snap in page.items():
        caps = listing[name]["capabilities"]
        why = caps["why_not"]
        assert snap["disabled"] == {
            "upload": not caps["encode"],
            "invert": not caps["encode"],
            "sample-btn": not caps["sample"],
            "interp-btn": not caps["interpolate"],
        }, name
        assert snap["pad_off"] == (not caps["decode"])
        assert snap["why"]["encode-why"] == why.get("encode")
        assert snap["why"]["decode-why"] == why.get("decode") == snap["why"]["pad-why"]
        assert snap["why"]["interp-why"] == why.get("interpolate")
        assert snap["why"]["sample-why"] is None
        assert not snap["status_error"], (name, snap["status"])
        if caps["decode"]:
            assert snap["decodes"] >= 1 and snap["decoded_src"] and "z[0]" in snap["z"], name
            assert snap["decoded_hint"] == caps["decoded"]
        else:
            assert snap["decodes"] == 0 and not snap["decoded_src"] and snap["z"] == ""
            assert "no latent variable" in snap["run_info"]
        if caps["latents"]:
            assert snap["status"].startswith("300 test codes drawn")
        else:
            assert snap["status"] == f"no test codes on the pad: {why['latents']}"
        assert snap["samples"] == 16 and snap["sample_note"] == caps["samples"]
        no_z = name in ("hierarchical", "pixelcnn")  # ancestral samples: no single z to show
        assert snap["samples_clickable"] == (0 if no_z else 16), name


def test_the_page_decodes_and_encodes_labelled_runs_at_the_picked_label(page):
    for name in ("cvae", "m2"):
        snap = page[name]
        assert snap["label_shown"] and snap["labels"] == [str(k) for k in range(10)]
        assert snap["state_y"] == 3 and snap["decodes_after_label"] >= 1
        assert snap["encode_label_shown"]
        assert snap["encoded_shown"] and "q(z | x, y) at y = 3 (given)" in snap["posterior"]
    assert page["cvae"]["encode_labels"] == [str(k) for k in range(10)]  # required: no "predict"
    assert page["m2"]["encode_labels"] == ["", *[str(k) for k in range(10)]]
    assert not page["vae"]["label_shown"] and not page["vae"]["encode_label_shown"]
    assert page["vae"]["encoded_shown"] and "±" in page["vae"]["posterior"]
