"""Downloads against a real HTTP server on 127.0.0.1: verified, resumable, nothing half-written."""

from __future__ import annotations

import dataclasses
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from vaelab.cli import main
from vaelab.data.download import content_sha256, download
from vaelab.data.sources import FREY_FACE, SOURCES, cache_dir
from vaelab.errors import ChecksumMismatch, DataError, DownloadError

from vaelab_testing import MNIST_NAMES, tiny_source


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, honouring `Range: bytes=N-` (as real mirrors do), and counts bytes sent.

    A first path segment in FAULTS makes it a broken mirror: `html/` answers every file with a login page,
    `badstatus/` with a line that is not HTTP, `chunkcut/` with a chunked reply cut short, and `bad206/`
    answers a Range request with 206 but the whole file and no Content-Range.
    """

    sent = 0
    ranges = True

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        fault, _, rest = self.path.lstrip("/").partition("/")
        if fault not in FAULTS:
            fault, rest = "", self.path.lstrip("/")
        if fault == "html":
            self._reply(200, LOGIN_PAGE)
            return
        if fault == "badstatus":
            self.wfile.write(b"GARBAGE\r\n\r\n")
            return
        path = Path(self.translate_path("/" + rest))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        if fault == "chunkcut":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = data[: len(data) // 2]
            self.wfile.write(b"%x\r\n" % len(half) + half + b"\r\n1000\r\nabc")
            return
        rng = self.headers.get("Range")
        if not (rng and type(self).ranges):
            self._reply(200, data)
            return
        start = int(rng.split("=")[1].split("-")[0])
        if fault == "bad206":
            self._reply(206, data)
        elif start >= len(data):
            self._reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        else:
            self._reply(206, data[start:], {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        type(self).sent += len(body)  # before writing: once the client has the bytes, the count has them
        self.wfile.write(body)


FAULTS = ("html", "badstatus", "chunkcut", "bad206")
LOGIN_PAGE = b"<html><body>Please log in</body></html>"


def damaged(data: bytes) -> bytes:
    """`data` (gzip) with its header intact and the compressed stream after it scrambled."""
    return data[:20] + bytes(b ^ 0x55 for b in data[20:])


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
        DataError,
        match=r"download failed: .*train-images-idx3-ubyte\.gz \(checksum mismatch: content sha256 \w+, expected 0+\)$",
    ):
        download([url + MNIST_NAMES[0]], dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not list(dest.parent.glob("*"))


def test_the_failure_says_by_its_type_whether_a_mirror_served_another_file(server, tiny_mnist, tmp_path):
    """ChecksumMismatch when some mirror served a file with another checksum (the others may fail in other
    ways); DownloadError, not a ChecksumMismatch, when none did."""
    url, _ = server
    name = MNIST_NAMES[0]
    with pytest.raises(ChecksumMismatch, match=r"badstatus/.*\(bad HTTP reply.*\(checksum mismatch: "):
        download([url + "badstatus/" + name, url + name], tmp_path / "a" / name, "0" * 64, progress=False)
    with pytest.raises(DownloadError) as info:
        download(
            [url + "badstatus/" + name, url + "absent/" + name],
            tmp_path / "b" / name,
            content_sha256(tiny_mnist / name),
            progress=False,
        )
    assert not isinstance(info.value, ChecksumMismatch)
    assert str(info.value).endswith(f"{url}absent/{name} (HTTP 404 Not Found)")


def test_a_source_whose_mirror_serves_another_file_says_so_not_not_found(server, tiny_mnist, monkeypatch):
    """The source passes a mirror's checksum mismatch on as it is; any other download failure becomes the
    'not found; looked in' error."""
    url, _ = server
    monkeypatch.setenv("VAELAB_OFFLINE", "0")
    src = tiny_source(tiny_mnist, name="tiny-other", mirrors=(url,))
    src = dataclasses.replace(src, files=(dataclasses.replace(src.files[0], sha256="0" * 64), *src.files[1:]))
    with pytest.raises(ChecksumMismatch) as info:
        src.load(None)
    assert str(info.value).startswith(f"download failed: {url}{MNIST_NAMES[0]} (checksum mismatch: ")
    assert "not found" not in str(info.value)


def _part_of_1000_bytes(tiny_mnist, tmp_path):
    """The first file's name, its bytes, and where it goes, with the first 1,000 bytes left as a .part."""
    name = MNIST_NAMES[0]
    full = (tiny_mnist / name).read_bytes()
    dest = tmp_path / "dl" / name
    dest.parent.mkdir()
    dest.with_name(name + ".part").write_bytes(full[:1000])
    return name, full, dest


def test_resume_fetches_only_the_rest(server, tiny_mnist, tmp_path):
    url, handler = server
    name, full, dest = _part_of_1000_bytes(tiny_mnist, tmp_path)
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


def test_damaged_gzip_is_one_error(tiny_mnist, tmp_path):
    src = tiny_source(tiny_mnist, name="tiny-bad")
    folder = tmp_path / "given"
    folder.mkdir()
    for name in MNIST_NAMES:
        (folder / name).write_bytes(damaged((tiny_mnist / name).read_bytes()))
    with pytest.raises(DataError, match=r"given/train-images-idx3-ubyte\.gz: unreadable"):
        src.locate(folder, allow_download=False)


def test_a_damaged_part_is_deleted_and_the_next_try_starts_clean(server, tiny_mnist, tmp_path):
    url, _ = server
    name = MNIST_NAMES[0]
    full = (tiny_mnist / name).read_bytes()
    dest = tmp_path / "dl" / name
    part = dest.with_name(name + ".part")
    dest.parent.mkdir()
    part.write_bytes(damaged(full[:1000]))
    with pytest.raises(DataError, match=rf"download failed: {url}{name} \(damaged content: .*\)$"):
        download([url + name], dest, content_sha256(tiny_mnist / name), progress=False)
    assert not part.exists() and not dest.exists()
    download([url + name], dest, content_sha256(tiny_mnist / name), progress=False)
    assert dest.read_bytes() == full


def test_a_206_that_does_not_continue_the_part_starts_over(server, tiny_mnist, tmp_path):
    url, _ = server
    name, full, dest = _part_of_1000_bytes(tiny_mnist, tmp_path)  # left by a cut transfer
    download([url + "bad206/" + name], dest, content_sha256(tiny_mnist / name), progress=False)
    assert dest.read_bytes() == full
    assert not dest.with_name(name + ".part").exists()


@pytest.mark.parametrize("extra", [b"", b"xx"], ids=["complete", "longer"])
def test_a_416_is_complete_only_when_the_sizes_agree(server, tiny_mnist, tmp_path, extra):
    url, handler = server
    name = MNIST_NAMES[0]
    full = (tiny_mnist / name).read_bytes()
    dest = tmp_path / "dl" / name
    dest.parent.mkdir()
    dest.with_name(name + ".part").write_bytes(full + extra)
    download([url + name], dest, content_sha256(tiny_mnist / name), progress=False)
    assert dest.read_bytes() == full
    assert handler.sent == (len(full) if extra else 0)


@pytest.mark.parametrize("fault", ["html", "badstatus", "chunkcut"])
def test_a_broken_mirror_is_skipped_for_the_next(server, tiny_mnist, tmp_path, fault):
    url, _ = server
    name = MNIST_NAMES[0]
    dest = tmp_path / "dl" / name
    download([url + fault + "/" + name, url + name], dest, content_sha256(tiny_mnist / name), progress=False)
    assert dest.read_bytes() == (tiny_mnist / name).read_bytes()
    assert not list(dest.parent.glob("*.part"))


def test_when_every_mirror_fails_one_line_says_what_each_did(server, tiny_mnist, tmp_path):
    url, _ = server
    name = MNIST_NAMES[0]
    dest = tmp_path / "dl" / name
    urls = [url + f + "/" + name for f in ("html", "badstatus", "chunkcut")]
    with pytest.raises(DataError) as info:
        download(urls, dest, content_sha256(tiny_mnist / name), progress=False)
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg
    assert f"{urls[0]} (checksum mismatch: " in msg
    assert f"{urls[1]} (bad HTTP reply: BadStatusLine" in msg
    assert f"{urls[2]} (bad HTTP reply: IncompleteRead" in msg
    assert not dest.exists()


def test_a_cache_folder_that_cannot_be_made_is_one_line(
    server, tiny_mnist, tmp_path, monkeypatch, capsys, one_line_error
):
    url, _ = server
    monkeypatch.setenv("VAELAB_OFFLINE", "0")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setitem(SOURCES, "tiny-nodir", tiny_source(tiny_mnist, name="tiny-nodir", mirrors=(url,)))
    one_line_error(
        capsys,
        main(["data", "get", "tiny-nodir"]),
        f"cannot create folder {blocker}/vaelab/tiny-nodir: Not a directory",
    )


def test_frey_face_without_checksum_is_checked_before_it_is_kept(
    server, tiny_mnist, monkeypatch, capsys, one_line_error
):
    url, _ = server
    monkeypatch.setenv("VAELAB_OFFLINE", "0")
    ff = np.arange(560 * 30, dtype=np.uint8).reshape(560, 30)
    scipy.io.savemat(tiny_mnist / "frey_rawface.mat", {"ff": ff})
    stored = cache_dir() / "frey-face" / "frey_rawface.mat"

    def get(*mirrors: str) -> int:
        monkeypatch.setitem(SOURCES, "frey-face", dataclasses.replace(FREY_FACE, mirrors=mirrors))
        return main(["data", "get", "frey-face", "--data-dir", str(tiny_mnist.parent / "nowhere")])

    one_line_error(capsys, get(url + "html/"), "html/frey_rawface.mat (wrong content: not a readable .mat")
    assert not list(stored.parent.glob("*"))

    assert get(url + "html/", url) == 0
    out = capsys.readouterr().out
    assert stored.read_bytes() == (tiny_mnist / "frey_rawface.mat").read_bytes()
    assert f"found {stored} (no published checksum; its content was read and checked" in out
    assert "verified" not in out

    stored.write_bytes(LOGIN_PAGE)  # a bad file already in the cache is named, not called verified
    one_line_error(capsys, get(url), f"{stored}: not a readable .mat file")
