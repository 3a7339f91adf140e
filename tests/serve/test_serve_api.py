"""The explorer's API through FastAPI's TestClient: each endpoint's answer checked against the model, and
each rejection (bad JSON, wrong z length, path traversal, oversize or mistyped uploads) with its status."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.commands.common import open_run
from vaelab.config import Config
from vaelab.data.binarize import static_draw
from vaelab.data.folder import read_image as read_folder_image
from vaelab.distributions.sampling import sample
from vaelab.errors import VaelabError
from vaelab.serve import create_app
from vaelab.serve.uploads import BodyLimit
from vaelab.train import train
from vaelab.train.checkpoint import read_checkpoint, save_checkpoint
from vaelab.viz.figures import codes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns that it prefers httpx2 to httpx
    from fastapi.testclient import TestClient


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


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A folder of three tiny runs (2-D VAE, 2-D autoencoder, 3-D VAE on grey levels) and some decoys."""
    root = tmp_path_factory.mktemp("serve") / "runs"
    train(small_config(), out=root / "vae2d")
    train(small_config(**{"model.name": "autoencoder"}), out=root / "ae2d")
    grey = {"model.latent_dim": 3, "model.likelihood": "continuous-bernoulli", "data.binarize": "none"}
    train(small_config(**grey), out=root / "grey3d")
    (root / "empty").mkdir()  # no checkpoint: not a run
    outside = tmp_path_factory.mktemp("outside")
    train(small_config(**{"train.epochs": 1}), out=outside / "elsewhere")
    os.symlink(outside / "elsewhere", root / "linked")  # a symlink out of the folder: never served
    (root / "leaky" / "checkpoints").mkdir(parents=True)
    os.symlink(outside / "elsewhere" / "checkpoints" / "last.pt", root / "leaky" / "checkpoints" / "last.pt")
    return root


@pytest.fixture(scope="module")
def client(runs):
    return TestClient(create_app(runs))


def png_array(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def uri_array(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return png_array(base64.b64decode(uri.split(",", 1)[1]))


def png_of(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def test_runs_lists_real_runs_inside_the_folder_only(client):
    body = client.get("/api/runs").json()
    assert body["single"] is False
    assert [r["name"] for r in body["runs"]] == ["ae2d", "grey3d", "vae2d"]
    vae = body["runs"][2]
    assert (vae["model"], vae["data"], vae["latent_dim"]) == ("vae", "digits", 2)
    assert body["skipped"] == [
        {"name": "leaky", "reason": "its checkpoint resolves through a symlink to outside the served folder"},
        {"name": "linked", "reason": "it resolves through a symlink to outside the served folder"},
    ]


def test_a_single_run_is_served_under_its_folder_name(runs):
    c = TestClient(create_app(runs / "vae2d"))
    assert [r["name"] for r in c.get("/api/runs").json()["runs"]] == ["vae2d"]
    assert c.post("/api/decode", json={"run": "ae2d", "z": [0, 0]}).status_code == 404


def test_decode_returns_the_decoded_mean_as_png(client, runs):
    z = [0.3, -1.2]
    r = client.post("/api/decode", json={"run": "vae2d", "z": z})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    model = open_run(str(runs / "vae2d")).model
    with torch.no_grad():
        want = as_uint8(model.decode(torch.tensor([z])).mean[0, 0])
    got = png_array(r.content)
    assert got.shape == (8, 8)
    assert np.array_equal(got, want)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"run": "vae2d", "z": [0.0]}, 422, "2-d latent space"),
        ({"run": "grey3d", "z": [0.0, 1.0]}, 422, "3-d latent space"),
        ({"run": "vae2d", "z": ["a", 1]}, 422, "z.0"),
        ({"run": "vae2d", "z": []}, 422, "z"),
        ({"run": "vae2d"}, 422, "z: Field required"),
        ({"run": "vae2d", "z": [0, 0], "extra": 1}, 422, "extra"),
        ({"run": "../vae2d", "z": [0, 0]}, 422, "invalid run name"),
        ({"run": "/etc/passwd", "z": [0, 0]}, 422, "invalid run name"),
        ({"run": "..", "z": [0, 0]}, 422, "invalid run name"),
        ({"run": "vae2d/../ae2d", "z": [0, 0]}, 422, "invalid run name"),
        ({"run": "nope", "z": [0, 0]}, 404, "no run named 'nope'"),
        ({"run": "empty", "z": [0, 0]}, 404, "no run named"),
        ({"run": "linked", "z": [0, 0]}, 404, "no run named"),
        ({"run": "leaky", "z": [0, 0]}, 404, "no run named"),
    ],
)
def test_decode_rejects_with_a_message(client, body, status, needle):
    r = client.post("/api/decode", json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'{"run": "vae2d", "z": [0, ', "malformed JSON"),
        (b'{"run": "vae2d", "z": [NaN, 0]}', "finite number"),
        (b'{"run": "vae2d", "z": [1e999, 0]}', "finite number"),
        (b"[1, 2]", "valid dictionary"),
    ],
)
def test_malformed_json_is_422(client, raw, needle):
    r = client.post("/api/decode", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert needle in r.json()["detail"]


def test_oversize_json_is_413_by_declared_length_and_by_stream(client):
    big = b'{"run": "vae2d", "z": [' + b"0," * 200_000 + b"0]}"
    r = client.post("/api/decode", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]

    def chunks():
        for _ in range(100):
            yield b" " * 10_000

    r = client.post("/api/decode", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]


def _call(app, headers, chunk: int, count: int):
    """Run an ASGI app on one POST whose body arrives in `count` chunks; (status, chunks the app read)."""
    read = 0
    sent: list[dict] = []

    async def receive():
        nonlocal read
        read += 1
        return {"type": "http.request", "body": b"x" * chunk, "more_body": read < count}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/encode", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], read


def test_body_limit_answers_413_without_reading_the_body_whole():
    async def reads_everything(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    from starlette.middleware.exceptions import ExceptionMiddleware

    app = BodyLimit(ExceptionMiddleware(reads_everything), default=10, limits={"/api/encode": 100_000})
    assert _call(app, [], 1000, 50) == (200, 50)  # 50 kB: under the limit, read whole
    # declared too large: refused before a single chunk is read
    assert _call(app, [(b"content-length", b"10000000")], 1000, 10_000) == (413, 0)
    # no declared length: cut off at the first chunk past the limit, not at the end of the 10 MB body
    assert _call(app, [], 1000, 10_000) == (413, 101)


def test_latents_are_the_test_posterior_means(client, runs):
    """The codes are the test posterior means, and the plane summary is their PCA recomputed here in float64:
    the top two right singular vectors of the centred codes (up to sign), s/sqrt(N-1), s^2/sum(s^2), std ddof=1."""
    body = client.get("/api/latents", params={"run": "grey3d"}).json()
    o = open_run(str(runs / "grey3d"))
    test = o.split("test")
    want = codes(o.model, test).double().numpy()
    got = np.array(body["codes"])
    assert got.shape == want.shape == (300, 3)
    assert np.abs(got - want).max() <= 5e-5  # rounded to 4 decimals
    assert body["labels"] == test.labels.tolist()
    assert np.allclose(body["mean"], want.mean(0), rtol=0, atol=1e-6)
    assert np.allclose(body["std"], want.std(0, ddof=1), rtol=1e-6, atol=0)  # ddof=0 is 1.7e-3 off
    _, s, v = np.linalg.svd(want - want.mean(0), full_matrices=False)
    assert s[0] > 1.1 * s[1] and s[1] > 1.1 * s[2]  # well-separated: each axis is unique up to sign
    axes = np.array(body["pca"]["axes"])
    signs = np.sign((axes * v[:2]).sum(1))
    assert np.allclose(axes * signs[:, None], v[:2], rtol=0, atol=1e-5)  # float32 SVD: ~2e-7 off
    assert np.allclose(body["pca"]["scales"], s[:2] / np.sqrt(len(want) - 1), rtol=1e-6, atol=0)
    assert np.allclose(body["pca"]["explained"], s[:2] ** 2 / (s**2).sum(), rtol=1e-6, atol=0)
    assert (body["latent_dim"], body["generative"], body["shape"]) == (3, True, [1, 8, 8])
    ae = client.get("/api/latents", params={"run": "ae2d"}).json()
    assert ae["generative"] is False
    assert client.get("/api/latents").status_code == 422
    assert client.get("/api/latents", params={"run": "../../etc"}).status_code == 422


def test_encode_gives_the_posterior_of_the_uploaded_image(client, runs):
    o = open_run(str(runs / "grey3d"))
    u8 = (o.split("test").images[:1]).cpu()  # a grey-level run keeps intensities: the upload is exact
    r = client.post(
        "/api/encode",
        data={"run": "grey3d"},
        files={"file": ("d.png", png_of(u8[0, 0].numpy()), "image/png")},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    with torch.no_grad():
        q = o.model.encode(u8.float() / 255)
        rec = o.model.decode(q.mean).mean[0, 0]
    assert np.allclose(body["mean"], q.mean[0].numpy(), atol=1e-5)
    assert np.allclose(body["std"], q.stddev[0].numpy(), atol=1e-5)
    assert body["binarized"] is False
    assert np.array_equal(uri_array(body["input"]), u8[0, 0].numpy())
    assert np.abs(uri_array(body["reconstruction"]).astype(int) - as_uint8(rec).astype(int)).max() <= 1


def test_encode_binarizes_like_the_test_split_for_a_binarized_run(client, runs):
    o = open_run(str(runs / "vae2d"))
    u8 = o.split("test").images[:1]  # already a 0/1 draw; take the grey source image instead
    grey = torch.from_numpy(np.linspace(0, 255, 64).reshape(1, 1, 8, 8).astype(np.uint8))
    r = client.post(
        "/api/encode",
        data={"run": "vae2d"},
        files={"file": ("g.png", png_of(grey[0, 0].numpy()), "image/png")},
    )
    body = r.json()
    want = static_draw(grey, o.config.data.binarize_seed + 1).float()  # the test split's seed offset
    assert body["binarized"] is True
    assert np.array_equal(uri_array(body["input"]), (want[0, 0] * 255).to(torch.uint8).numpy())
    with torch.no_grad():
        assert np.allclose(body["mean"], o.model.encode(want).mean[0].numpy(), atol=1e-5)
    assert set(np.unique(u8.numpy())) <= {0, 1}


def test_encode_crops_the_centre_resizes_and_inverts(client):
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 20:60] = 255  # only the centre square is white
    for name, kind, fmt in (("w.png", "image/png", "PNG"), ("w.jpg", "image/jpeg", "JPEG")):
        files = {"file": (name, png_of(wide, fmt), kind)}
        seen = uri_array(client.post("/api/encode", data={"run": "grey3d"}, files=files).json()["input"])
        assert seen.shape == (8, 8)
        assert seen[:, 1:7].min() >= 250 and seen.mean() > 245  # bilinear edges blend a little outside
        inv = client.post("/api/encode", data={"run": "grey3d", "invert": "true"}, files=files).json()
        assert uri_array(inv["input"])[:, 1:7].max() <= 5


def test_encode_flattens_transparency_onto_white(client):
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    files = {"file": ("t.png", png_of(rgba), "image/png")}
    seen = uri_array(client.post("/api/encode", data={"run": "grey3d"}, files=files).json()["input"])
    assert seen.min() == 255


def test_a_transparent_upload_is_seen_as_the_folder_loader_reads_it(client, tmp_path):
    # one rule for both (vaelab.data.pictures): what a model trained on is what its explorer shows it
    rgba = np.zeros((8, 8, 4), np.uint8)  # transparent black, an opaque red square, a half-transparent column
    rgba[2:6, 2:6] = (200, 30, 30, 255)
    rgba[:, 7] = (0, 0, 0, 128)
    png = png_of(rgba)
    (tmp_path / "t.png").write_bytes(png)
    trained = read_folder_image(tmp_path / "t.png", 8, 1)[0]
    files = {"file": ("t.png", png, "image/png")}
    seen = uri_array(client.post("/api/encode", data={"run": "grey3d"}, files=files).json()["input"])
    np.testing.assert_array_equal(seen, trained)
    assert seen[0, 0] == 255 and seen[3, 3] == 81 and seen[0, 7] == 127


@pytest.mark.parametrize(
    "picture",
    [
        np.linspace(0, 65535, 256)
        .round()
        .astype(np.uint16)
        .reshape(16, 16),  # 16-bit grey: scaled, not clipped
        np.random.default_rng(3).integers(0, 256, (12, 9), dtype=np.uint8),  # odd crop: whole-pixel offsets
    ],
    ids=["16-bit", "odd-crop"],
)
def test_an_upload_is_converted_exactly_as_the_folder_loader_converts_it(client, tmp_path, picture):
    png = png_of(picture)
    (tmp_path / "p.png").write_bytes(png)
    files = {"file": ("p.png", png, "image/png")}
    seen = uri_array(client.post("/api/encode", data={"run": "grey3d"}, files=files).json()["input"])
    np.testing.assert_array_equal(seen, read_folder_image(tmp_path / "p.png", 8, 1)[0])


def test_a_phones_multi_picture_jpeg_is_a_jpeg(client):
    # cameras and phones write MPO: a JPEG whose first picture is the photo (Pillow names the format MPO)
    buf = io.BytesIO()
    first, second = Image.new("L", (8, 8), 255), Image.new("L", (8, 8), 0)
    first.convert("RGB").save(buf, format="MPO", save_all=True, append_images=[second.convert("RGB")])
    files = {"file": ("photo.jpg", buf.getvalue(), "image/jpeg")}
    r = client.post("/api/encode", data={"run": "grey3d"}, files=files)
    assert r.status_code == 200, r.text
    assert uri_array(r.json()["input"]).min() >= 250  # the first picture (white), not the second


def header_only_png(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims width x height grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [10_000, 20_000])  # 100 and 400 megapixels: past Pillow's warning, its error
def test_encode_answers_413_for_a_picture_past_pillows_own_pixel_guard(client, side):
    files = {"file": ("big.png", header_only_png(side, side), "image/png")}
    r = client.post("/api/encode", data={"run": "vae2d"}, files=files)
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == f"image of {side}x{side} pixels is over the limit of 25000000 pixels"


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="GIF")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("file", "status", "needle"),
    [
        (("a.txt", b"hello", "text/plain"), 415, "content type 'text/plain'"),
        (("a.png", b"hello, not a png", "image/png"), 415, "not a readable PNG or JPEG"),
        (("a.png", _gif(), "image/png"), 415, "the file is GIF"),
        (("a.png", b"", "image/png"), 422, "empty"),
    ],
)
def test_encode_rejects_what_is_not_a_png_or_jpeg(client, file, status, needle):
    r = client.post("/api/encode", data={"run": "vae2d"}, files={"file": file})
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


def test_encode_rejects_missing_parts_and_bad_runs(client):
    png = png_of(np.zeros((8, 8), np.uint8))
    assert client.post("/api/encode", data={"run": "vae2d"}).status_code == 422
    r = client.post("/api/encode", files={"file": ("a.png", png, "image/png")})
    assert r.status_code == 422 and "run" in r.json()["detail"]
    r = client.post("/api/encode", data={"run": "../x"}, files={"file": ("a.png", png, "image/png")})
    assert r.status_code == 422


def test_encode_limits_bytes_and_pixels(runs):
    c = TestClient(create_app(runs, max_upload_bytes=4000, max_pixels=900))
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    r = c.post("/api/encode", data={"run": "vae2d"}, files={"file": ("n.png", png_of(noisy), "image/png")})
    assert r.status_code == 413 and "4000 bytes" in r.json()["detail"]
    flat = png_of(np.zeros((40, 40), np.uint8))  # small file, 1,600 pixels
    r = c.post("/api/encode", data={"run": "vae2d"}, files={"file": ("f.png", flat, "image/png")})
    assert r.status_code == 413 and "40x40 pixels" in r.json()["detail"]


def test_sample_draws_from_the_prior_with_its_seed(client, runs):
    body = client.post("/api/sample", json={"run": "vae2d", "n": 5, "seed": 7}).json()
    model = open_run(str(runs / "vae2d")).model
    want = sample(model.prior(), (5,), torch.Generator().manual_seed(7))
    assert np.allclose(body["z"], want.numpy(), atol=1e-6)
    assert len(body["images"]) == 5 and body["generative"] is True
    assert body == client.post("/api/sample", json={"run": "vae2d", "n": 5, "seed": 7}).json()
    ae = client.post("/api/sample", json={"run": "ae2d", "n": 3}).json()
    assert ae["generative"] is False and "no prior" in ae["source"]
    for bad in ({"run": "vae2d", "n": 0}, {"run": "vae2d", "n": 65}, {"run": "vae2d", "seed": -1}):
        assert client.post("/api/sample", json=bad).status_code == 422


def test_interpolate_paths(client):
    z0, z1 = [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]
    lin = client.post("/api/interpolate", json={"run": "grey3d", "z0": z0, "z1": z1, "steps": 5}).json()
    assert np.allclose(lin["z"], np.linspace(z0, z1, 5), atol=1e-6)
    assert len(lin["images"]) == 5
    sph = client.post(
        "/api/interpolate", json={"run": "grey3d", "z0": z0, "z1": z1, "steps": 3, "path": "spherical"}
    ).json()
    mid = np.array(sph["z"][1])  # slerp at t = 1/2 between orthogonal vectors of norms 1 and 2
    assert np.allclose(mid, [np.sqrt(0.5), 2 * np.sqrt(0.5), 0.0], atol=1e-5)
    bad = client.post("/api/interpolate", json={"run": "grey3d", "z0": z0, "z1": [0.0, 1.0]})
    assert bad.status_code == 422 and "z1 has 2 values" in bad.json()["detail"]
    assert (
        client.post("/api/interpolate", json={"run": "grey3d", "z0": z0, "z1": z1, "steps": 1}).status_code
        == 422
    )
    assert (
        client.post(
            "/api/interpolate", json={"run": "grey3d", "z0": z0, "z1": z1, "path": "cubic"}
        ).status_code
        == 422
    )


def test_page_and_assets_are_served_and_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="pad"' in page.text
    for asset in ("/static/app.js", "/static/app.css"):
        r = client.get(asset)
        assert r.status_code == 200
        text = r.text + page.text
        assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere
    assert client.get("/static/../app.py").status_code == 404


class Payload:
    """Any object a pickle would rebuild (and weights_only=True refuses)."""


def test_an_unsafe_checkpoint_is_refused_not_loaded(runs, tmp_path):
    root = tmp_path / "runs"
    (root / "evil" / "checkpoints").mkdir(parents=True)
    torch.save({"format": "vaelab-checkpoint", "x": Payload()}, root / "evil" / "checkpoints" / "best.pt")
    r = TestClient(create_app(root)).get("/api/latents", params={"run": "evil"})
    assert r.status_code == 500
    assert "refused" in r.json()["detail"] and "\n" not in r.json()["detail"]


def test_an_unexpected_error_is_a_one_line_json_500(runs, monkeypatch):
    """A bug inside a request (here: listing the runs raising) still answers JSON the page can show."""

    def broken(*_a, **_k):
        raise ZeroDivisionError("a bug")

    app = create_app(runs)
    monkeypatch.setattr(app.state.catalog, "scan", broken)
    r = TestClient(app, raise_server_exceptions=False).get("/api/runs")
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json() == {"detail": "internal error (ZeroDivisionError) serving /api/runs"}


def test_json_detail_is_one_line(client):
    r = client.post("/api/decode", json={"run": "vae2d", "z": ["a", "b", "c", "d"]})
    detail = r.json()["detail"]
    assert r.status_code == 422 and "\n" not in detail and json.dumps(detail)


def test_a_run_whose_data_is_gone_still_decodes(tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    cfg = small_config(**{"data.name": f"folder:{folder}", "data.image_size": 8, "train.epochs": 1})
    cfg = cfg.replace(**{"data.binarize": "none", "model.likelihood": "continuous-bernoulli"})
    train(cfg.replace(**{"data.valid_fraction": 0.0}), out=tmp_path / "runs" / "gone")
    for f in folder.iterdir():
        f.unlink()
    c = TestClient(create_app(tmp_path / "runs"))
    body = c.get("/api/latents", params={"run": "gone"}).json()
    assert body["count"] == 0 and body["codes"] == [] and "no test codes" in body["note"]
    assert body["pca"]["explained"] == [None, None] and body["mean"] == [0.0, 0.0]
    r = c.post("/api/decode", json={"run": "gone", "z": [0.5, 0.5]})
    assert r.status_code == 200 and png_array(r.content).shape == (8, 8)


def picture_of(run_dir, z: list[float]) -> np.ndarray:
    """What the run's own decoder draws for z, as the 8-bit picture the server sends."""
    model = open_run(str(run_dir)).model
    with torch.no_grad():
        return as_uint8(model.decode(torch.tensor([z])).mean[0, 0])


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        ("/api/decode", {"z": [1e39, 1]}, "z.0: Input should be less than or equal to 10000"),
        ("/api/decode", {"z": [3e38, 1]}, "z.0: Input should be less than or equal to 10000"),
        ("/api/decode", {"z": [0, -10000.5]}, "z.1: Input should be greater than or equal to -10000"),
        (
            "/api/interpolate",
            {"z0": [3e38, 0], "z1": [0, 0]},
            "z0.0: Input should be less than or equal to 10000",
        ),
        (
            "/api/interpolate",
            {"z0": [0, 0], "z1": [0, -1e39]},
            "z1.1: Input should be greater than or equal to -10000",
        ),
    ],
)
def test_z_beyond_the_limit_is_422_not_a_black_picture(client, path, body, detail):
    # 1e39 and 3e38 are finite floats but overflow float32: the decoder saw inf and its NaN was drawn as black
    r = client.post(path, json={"run": "vae2d", **body})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == detail


def test_limits_below_one_are_refused(runs):
    with pytest.raises(VaelabError, match=r"^limits must be at least 1, got max_upload_bytes=-5, "):
        create_app(runs, max_upload_bytes=-5)


def test_z_at_the_limit_is_decoded(client, runs):
    r = client.post("/api/decode", json={"run": "vae2d", "z": [10000, -10000]})
    assert r.status_code == 200
    assert np.array_equal(png_array(r.content), picture_of(runs / "vae2d", [1e4, -1e4]))


def _rewrite(source, target, change) -> None:
    """A copy of a run's best checkpoint at `target` (a new run folder), changed by `change`, sealed anew."""
    ck = read_checkpoint(source / "checkpoints" / "best.pt")
    change(ck)
    (target / "checkpoints").mkdir(parents=True)
    save_checkpoint(target / "checkpoints" / "best.pt", ck)


def _nan(prefix: str):
    def change(ck):
        for k, v in ck["model"].items():
            if k.startswith(prefix):
                ck["model"][k] = torch.full_like(v, float("nan"))

    return change


def test_a_model_with_nan_weights_is_refused_not_drawn(runs, tmp_path):
    """NaN weights are refused when the checkpoint is read (vaelab.train.checkpoint): every endpoint answers
    with the one line naming the file and the first bad tensor, and nothing is drawn."""
    root = tmp_path / "runs"
    _rewrite(runs / "vae2d", root / "nandec", _nan("decoder."))
    _rewrite(runs / "vae2d", root / "nanenc", _nan("encoder."))
    c = TestClient(create_app(root))
    png = {"file": ("a.png", png_of(np.zeros((8, 8), np.uint8)), "image/png")}
    for run, prefix in (("nandec", "decoder."), ("nanenc", "encoder.")):
        answers = [
            c.post("/api/decode", json={"run": run, "z": [0.5, 0.5]}),
            c.post("/api/interpolate", json={"run": run, "z0": [0, 0], "z1": [1, 1]}),
            c.post("/api/sample", json={"run": run, "n": 2}),
            c.post("/api/encode", data={"run": run}, files=png),
        ]
        for r in answers:
            detail = r.json()["detail"]
            assert r.status_code == 500 and "\n" not in detail, detail
            assert f"{root / run}" in detail and "the model's weights hold NaN or inf (" + prefix in detail, (
                detail
            )
            assert detail.endswith("the run diverged before this checkpoint was written?"), detail


def _overflowing(layer: str):
    """Finite weights whose first layer overflows float32 at a z or an image of ones: relu passes the inf on,
    and the next layer's weights of both signs make it NaN."""

    def change(ck):
        ck["model"][layer] = torch.full_like(ck["model"][layer], 3e38)

    return change


def test_a_model_that_overflows_is_refused_not_drawn(runs, tmp_path):
    """The guard on the pictures themselves (weights pass the checkpoint's finite check): a NaN picture or
    posterior is one line naming it, 422 for a z the client chose, 500 for the model's own draws or an upload."""
    root = tmp_path / "runs"
    first = {
        p: next(k for k in read_checkpoint(runs / "vae2d/checkpoints/best.pt")["model"] if k.startswith(p))
        for p in ("decoder.", "encoder.")
    }
    _rewrite(runs / "vae2d", root / "hugedec", _overflowing(first["decoder."]))
    _rewrite(runs / "vae2d", root / "hugeenc", _overflowing(first["encoder."]))
    c = TestClient(create_app(root))
    picture = "NaN or infinite values in the model's picture of z, so there is nothing to show"
    for r, status in (
        (c.post("/api/decode", json={"run": "hugedec", "z": [1, 1]}), 422),
        (c.post("/api/interpolate", json={"run": "hugedec", "z0": [1, 1], "z1": [2, 2]}), 422),
        (c.post("/api/sample", json={"run": "hugedec", "n": 64}), 500),
    ):
        # a 500 is the model's own failure, so it names the run
        want = picture if status == 422 else f"run 'hugedec': {picture}"
        assert (r.status_code, r.json()["detail"]) == (status, want), r.text
    ones = {"file": ("a.png", png_of(np.full((8, 8), 255, np.uint8)), "image/png")}
    r = c.post("/api/encode", data={"run": "hugeenc"}, files=ones)
    assert r.status_code == 500 and r.json()["detail"].startswith(
        "run 'hugeenc': NaN or infinite values in the posterior"
    ), r.text
    fine = c.post("/api/decode", json={"run": "hugeenc", "z": [1, 1]})  # its decoder is untouched
    assert fine.status_code == 200, fine.text


def test_any_folder_name_is_a_run_name_and_refused_folders_are_listed_with_why(runs, tmp_path):
    root = tmp_path / "runs"
    for name in ("my run", "a+b&c#d", "zoë", ".hidden", "bad\nname"):
        shutil.copytree(runs / "vae2d", root / name)
    os.symlink(runs / "vae2d", root / "linked")  # a run, but outside the served folder
    c = TestClient(create_app(root))
    body = c.get("/api/runs").json()
    assert [r["name"] for r in body["runs"]] == ["a+b&c#d", "my run", "zoë"]
    assert all(r["capabilities"]["decode"] for r in body["runs"])
    assert body["skipped"] == [
        {"name": ".hidden", "reason": "it starts with '.': hidden folders and '..' are not served"},
        {"name": "bad\nname", "reason": "it has control or unprintable characters, or is not valid UTF-8"},
        {"name": "linked", "reason": "it resolves through a symlink to outside the served folder"},
    ]
    want = picture_of(runs / "vae2d", [0.3, -0.4])
    for name in ("a+b&c#d", "my run", "zoë"):
        r = c.post("/api/decode", json={"run": name, "z": [0.3, -0.4]})
        assert r.status_code == 200 and np.array_equal(png_array(r.content), want)
        latents = c.get("/api/latents", params={"run": name}).json()  # the name URL-quoted in the query
        assert (latents["run"], latents["count"]) == (name, 300)
    r = c.post("/api/decode", json={"run": ".hidden", "z": [0, 0]})
    assert r.status_code == 422
    assert (
        r.json()["detail"]
        == "invalid run name '.hidden': it starts with '.': hidden folders and '..' are not served"
    )
    r = c.post("/api/decode", json={"run": "bad\nname", "z": [0, 0]})
    assert r.status_code == 422 and "\n" not in r.json()["detail"]
    assert c.post("/api/decode", json={"run": "linked", "z": [0, 0]}).status_code == 404
    assert c.post("/api/decode", json={"run": "x" * 256, "z": [0, 0]}).status_code == 422


@pytest.mark.parametrize("name", ["my run", ".hidden"])
def test_a_single_run_is_served_under_its_own_name_whatever_it_is(runs, tmp_path, name):
    shutil.copytree(runs / "vae2d", tmp_path / name)
    c = TestClient(create_app(tmp_path / name))
    body = c.get("/api/runs").json()
    assert body["single"] is True and body["skipped"] == []
    assert [r["name"] for r in body["runs"]] == [name] and "error" not in body["runs"][0]
    r = c.post("/api/decode", json={"run": name, "z": [0.3, -0.4]})
    assert r.status_code == 200 and np.array_equal(
        png_array(r.content), picture_of(runs / "vae2d", [0.3, -0.4])
    )
    r = c.post("/api/decode", json={"run": "other", "z": [0, 0]})
    assert (r.status_code, r.json()["detail"]) == (404, f"no run named 'other' (serving only {name!r})")


MALFORMED = {
    "weights": lambda ck: ck["model"].update({k: 3 for k in ck["model"]}),
    "shape": lambda ck: ck.update(shape="abc"),
    "config": lambda ck: ck.update(config=5),
    "key": lambda ck: ck["model"].update({1: torch.zeros(1)}),  # a TypeError while saying what does not fit
}


def test_a_sealed_checkpoint_with_a_malformed_body_is_listed_with_its_error(runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs / "vae2d", root / "good")
    for name, change in MALFORMED.items():
        _rewrite(runs / "vae2d", root / name, change)
    c = TestClient(create_app(root))
    r = c.get("/api/runs")
    assert r.status_code == 200, r.text
    listed = {e["name"]: e for e in r.json()["runs"]}
    assert sorted(listed) == ["config", "good", "key", "shape", "weights"]
    assert listed["good"]["capabilities"]["decode"] is True and "error" not in listed["good"]
    for name in MALFORMED:
        error = listed[name]["error"]
        assert error.startswith(str(root / name / "checkpoints" / "best.pt") + ": ") and "\n" not in error
        assert "capabilities" not in listed[name]
        r = c.post("/api/decode", json={"run": name, "z": [0, 0]})
        assert (r.status_code, r.json()["detail"]) == (500, error)
    assert c.post("/api/decode", json={"run": "good", "z": [0, 0]}).status_code == 200


def test_runs_say_what_the_checkpoint_was_trained_with_not_an_edited_config_json(runs, tmp_path):
    shutil.copytree(runs / "grey3d", tmp_path / "runs" / "grey3d")
    cfg_file = tmp_path / "runs" / "grey3d" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["data"].update(name="mnist", binarize="dynamic")
    cfg["model"].update(name="iwae", likelihood="bernoulli", latent_dim=7)
    cfg_file.write_text(json.dumps(cfg))
    c = TestClient(create_app(tmp_path / "runs"))
    entry = c.get("/api/runs").json()["runs"][0]
    latents = c.get("/api/latents", params={"run": "grey3d"}).json()
    keys = ("model", "data", "likelihood", "binarize", "latent_dim")
    assert [entry[k] for k in keys] == ["vae", "digits", "continuous-bernoulli", "none", 3]
    assert [entry[k] for k in keys] == [latents[k] for k in keys]
