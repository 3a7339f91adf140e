"""Fuzzing (Hypothesis): every reader of outside bytes answers arbitrary input with its own clear error.

The IDX reader, the image-folder reader, the .mat reader, the checkpoint reader, the config parser and every
server endpoint get random and mutated inputs; none may raise anything but vaelab's errors (or answer 500),
and none may hang (each example has a deadline).
"""

from __future__ import annotations

import gzip
import io
import struct
import warnings
from datetime import timedelta

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from vaelab.config import build_config
from vaelab.data.folder import read_image
from vaelab.data.idx import read_idx, write_idx
from vaelab.data.sources import parse_frey
from vaelab.errors import VaelabError
from vaelab.train import read_checkpoint

from vaelab_testing import small_config

FUZZ = settings(
    max_examples=60,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _idx_bytes(data) -> bytes:
    """A valid IDX header (sometimes lying about its size) followed by random payload bytes."""
    code = data.draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07, 0x10]))
    dims = data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=9))
    head = struct.pack(">HBB", data.draw(st.sampled_from([0, 0, 1])), code, len(dims))
    head += b"".join(struct.pack(">I", d) for d in dims)
    return head + data.draw(st.binary(max_size=512))


@FUZZ
@given(data=st.data(), gz=st.booleans(), raw=st.booleans())
def test_idx_reader(tmp_path_factory, data, gz, raw):
    body = data.draw(st.binary(max_size=600)) if raw else _idx_bytes(data)
    if gz:
        body = gzip.compress(body)
        if data.draw(st.booleans()):
            body = body[: data.draw(st.integers(0, len(body)))]
    p = tmp_path_factory.mktemp("idx") / "f.idx"
    p.write_bytes(body)
    try:
        arr = read_idx(p)
    except VaelabError as e:
        assert str(p) in str(e) and "\n" not in str(e)
    else:
        assert arr.nbytes <= len(body) * 8 + 64


def test_idx_reader_round_trips_what_the_fuzzer_may_produce(tmp_path):
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", arr)
    assert np.array_equal(read_idx(tmp_path / "a.idx"), arr)


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@FUZZ
@given(
    body=st.binary(max_size=400),
    cut=st.integers(0, 200),
    ext=st.sampled_from([".png", ".jpg", ".jpeg"]),
    mutate=st.booleans(),
)
def test_image_reader(tmp_path_factory, body, cut, ext, mutate):
    if mutate:  # a real PNG, cut short and followed by junk
        good = _png_bytes()
        body = good[: min(cut, len(good))] + body
    p = tmp_path_factory.mktemp("img") / f"x{ext}"
    p.write_bytes(body)
    try:
        out = read_image(p, 8, 1)
    except VaelabError as e:
        assert str(p) in str(e)
    else:
        assert out.shape == (1, 8, 8) and out.dtype == np.uint8


@FUZZ
@given(body=st.binary(max_size=400), prefix=st.booleans())
def test_mat_reader_on_bytes(tmp_path_factory, body, prefix):
    p = tmp_path_factory.mktemp("mat") / "frey_rawface.mat"
    p.write_bytes(
        (b"MATLAB 5.0 MAT-file, Platform: GLNXA64" + bytes(86) + b"\x00\x01IM" if prefix else b"") + body
    )
    with pytest.raises(VaelabError, match="frey_rawface.mat"):
        parse_frey({"frey_rawface.mat": p})


@FUZZ
@given(
    dtype=st.sampled_from([np.uint8, np.float64, np.int32, np.bool_]),
    shape=st.tuples(st.integers(0, 600), st.integers(0, 4)),
    key=st.sampled_from(["ff", "other"]),
)
@example(dtype=np.uint8, shape=(560, 1), key="ff")  # one frame: squeeze_me made it 1-D
@example(dtype=np.uint8, shape=(560, 0), key="ff")
def test_mat_reader_on_wrong_arrays(tmp_path_factory, dtype, shape, key):
    """Anything but a uint8 'ff' of shape (560, N >= 1) is refused naming the file; a right one splits its N
    frames into train and test by sources.py's rule (test: the last N // 10, at most 200), train never empty."""
    p = tmp_path_factory.mktemp("mat") / "frey_rawface.mat"
    scipy.io.savemat(p, {key: np.zeros(shape, dtype=dtype)})
    ok = key == "ff" and dtype == np.uint8 and shape[0] == 560 and shape[1] >= 1
    if ok:
        s = parse_frey({"frey_rawface.mat": p})
        frames = shape[1]
        assert len(s.train) + len(s.test) == frames
        assert len(s.test) == min(200, frames // 10)
        assert len(s.train) >= 1 and s.train.images.shape[1:] == (1, 28, 20)
    else:
        with pytest.raises(VaelabError, match="frey_rawface.mat"):
            parse_frey({"frey_rawface.mat": p})


@FUZZ
@given(text=st.text(max_size=300))
def test_config_files(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("cfg") / "c.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        build_config(p)
    except VaelabError as e:
        assert "\n" not in str(e)


@FUZZ
@given(
    items=st.dictionaries(
        st.sampled_from(
            [
                "train.lr",
                "train.epochs",
                "model.hidden",
                "data.name",
                "train.progress",
                "model.extra",
                "x.y",
                "train",
            ]
        )
        | st.text(max_size=12),
        st.text(max_size=20),
        max_size=4,
    )
)
def test_config_overrides(items):
    try:
        build_config(None, items)
    except VaelabError as e:
        assert "\n" not in str(e)


@FUZZ
@given(body=st.binary(max_size=800))
def test_checkpoint_reader(tmp_path_factory, body):
    p = tmp_path_factory.mktemp("ck") / "c.pt"
    p.write_bytes(body)
    with pytest.raises(VaelabError, match="c.pt"):
        read_checkpoint(p)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from vaelab.serve import create_app
    from vaelab.train import train

    root = tmp_path_factory.mktemp("fuzzserve")
    train(small_config(**{"train.epochs": 1}), out=root / "r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(create_app(root))


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["run", "z", "n", "seed", "z0", "z1", "steps", "path", "q"]), inner, max_size=5
        )
    ),
    max_leaves=12,
)


@FUZZ
@given(
    path=st.sampled_from(["/api/decode", "/api/sample", "/api/interpolate"]),
    body=JSONISH,
    raw=st.binary(max_size=200),
    use_raw=st.booleans(),
)
def test_server_json_endpoints(client, path, body, raw, use_raw):
    if use_raw:
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
    else:
        r = client.post(path, json=body)
    assert r.status_code in (200, 404, 413, 415, 422), (r.status_code, r.text)
    if r.status_code != 200:
        assert "detail" in r.json()


@FUZZ
@given(
    body=st.binary(max_size=600),
    ctype=st.sampled_from(["image/png", "image/jpeg", "text/plain", "application/octet-stream"]),
    run=st.text(max_size=8),
)
def test_server_upload_endpoint(client, body, ctype, run):
    r = client.post("/api/encode", data={"run": run or "r"}, files={"file": ("f.png", body, ctype)})
    assert r.status_code in (200, 404, 413, 415, 422), (r.status_code, r.text)


@FUZZ
@given(run=st.text(max_size=40))
def test_server_run_names(client, run):
    r = client.get("/api/latents", params={"run": run})
    assert r.status_code in (200, 404, 422), (r.status_code, r.text)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"run": "r", "z": [Infinity, 0]}',
        b'{"run": "r", "z": [NaN, 0]}',
        b"\x00\x01",
        b'{"run": "r", "z": [1e999, 0]}',
        b"[" * 5000,
    ],
)
def test_server_rejects_non_finite_and_undecodable_bodies(client, raw):
    r = client.post("/api/decode", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "\n" not in r.json()["detail"]


@pytest.mark.slow
def test_atheris_finds_no_crash_in_a_short_run(tmp_path):
    """The coverage-guided harness in fuzz/ runs clean for a few hundred inputs (where atheris installs)."""
    import resource
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("atheris", reason="atheris has no wheel for this Python or platform")
    harness = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_readers.py"
    # Linux keeps ru_maxrss across fork and exec, and libFuzzer's memory limit reads it: the child starts at
    # this test process's own peak. The limit is libFuzzer's default 2 GB above that.
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    r = subprocess.run(
        [
            sys.executable,
            str(harness),
            "-atheris_runs=300",
            f"-rss_limit_mb={inherited_mb + 2048}",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Done 300 in" in r.stderr
