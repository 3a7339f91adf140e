"""Downloads against a real HTTP server on 127.0.0.1: verified, resumable, nothing half-written."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from vaelab.data.download import content_sha256, download
from vaelab.data.sources import cache_dir
from vaelab.errors import DataError

from vaelab_testing import MNIST_NAMES, tiny_source


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, honouring `Range: bytes=N-` (as real mirrors do), and counts bytes sent."""

    sent = 0
    ranges = True

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and type(self).ranges:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        type(self).sent += len(body)


@pytest.fixture
def server(tiny_mnist):
    handler = type("H", (RangeHandler,), {"sent": 0, "ranges": True})

    def make(*args, **kw):
        return handler(*args, directory=str(tiny_mnist), **kw)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", handler
    httpd.shutdown()
    httpd.server_close()


def test_source_downloads_into_the_cache(server, tiny_mnist, monkeypatch):
    url, _ = server
    monkeypatch.setenv("VAELAB_OFFLINE", "0")
    src = tiny_source(
        tiny_mnist, name="tiny-dl", mirrors=("http://127.0.0.1:9/", url)
    )  # first mirror refuses
    splits = src.load(None)
    assert len(splits.train) == 200
    for name in MNIST_NAMES:
        stored = cache_dir() / "tiny-dl" / name
        assert stored.read_bytes() == (tiny_mnist / name).read_bytes()
    assert not list((cache_dir() / "tiny-dl").glob("*.part"))


def test_checksum_mismatch_keeps_nothing(server, tmp_path):
    url, _ = server
    dest = tmp_path / "dl" / MNIST_NAMES[0]
    with pytest.raises(
        DataError, match=r"checksum mismatch for .*train-images-idx3-ubyte\.gz.*nothing was kept"
    ):
        download([url + MNIST_NAMES[0]], dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not list(dest.parent.glob("*"))


def test_resume_fetches_only_the_rest(server, tiny_mnist, tmp_path):
    url, handler = server
    name = MNIST_NAMES[0]
    full = (tiny_mnist / name).read_bytes()
    dest = tmp_path / "dl" / name
    dest.parent.mkdir()
    dest.with_name(name + ".part").write_bytes(full[:1000])
    download([url + name], dest, content_sha256(tiny_mnist / name), progress=False)
    assert dest.read_bytes() == full
    assert handler.sent == len(full) - 1000


def test_server_without_ranges_restarts(server, tiny_mnist, tmp_path):
    url, handler = server
    handler.ranges = False
    name = MNIST_NAMES[0]
    full = (tiny_mnist / name).read_bytes()
    dest = tmp_path / "dl" / name
    dest.parent.mkdir()
    dest.with_name(name + ".part").write_bytes(b"garbage that must not survive")
    download([url + name], dest, content_sha256(tiny_mnist / name), progress=False)
    assert dest.read_bytes() == full


def test_all_mirrors_failing_names_each(tmp_path):
    with pytest.raises(
        DataError, match=r"download failed: http://127\.0\.0\.1:9/a \(.*\); http://127\.0\.0\.1:9/b"
    ):
        download(
            ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"], tmp_path / "a", None, timeout=2, progress=False
        )
    assert not (tmp_path / "a").exists()


def test_offline_source_error_mentions_the_download(tiny_mnist, monkeypatch):
    monkeypatch.setenv("VAELAB_OFFLINE", "0")
    src = tiny_source(tiny_mnist, name="tiny-off", mirrors=("http://127.0.0.1:9/",))
    with pytest.raises(
        DataError, match=r"data set 'tiny-off' not found; looked in: .*download failed: http://127"
    ):
        src.load(None)
