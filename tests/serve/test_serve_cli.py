"""`vaelab serve` as a command and a real uvicorn server: a busy port or bad host is one line with exit
code 1, and an oversize upload is answered with 413 while the client is still sending it."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time

import httpx
import pytest

from vaelab.cli import main
from vaelab.config import Config
from vaelab.errors import CheckpointError
from vaelab.serve import bind, create_app, is_loopback, make_server
from vaelab.train import train


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
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve-cli") / "runs" / "tiny"
    train(small_config(**{"train.epochs": 1}), out=out)
    return out


def test_a_busy_port_is_one_line_and_exit_1(run, capsys, one_line_error):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["serve", str(run), "--port", str(port)])
    one_line_error(capsys, code, "vaelab serve: error:", f"port {port}", "already in use")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--host", "no-such-host.invalid"], ("cannot serve on host 'no-such-host.invalid'",)),
        (["--host", "192.0.2.1"], ("cannot listen on 192.0.2.1",)),
    ],
)
def test_a_host_we_cannot_listen_on_is_one_line(run, capsys, one_line_error, args, needles):
    one_line_error(capsys, main(["serve", str(run), "--port", "0", *args]), *needles)


def test_no_runs_is_one_line(tmp_path, capsys, one_line_error):
    one_line_error(capsys, main(["serve", str(tmp_path / "missing")]), "no run folder at")
    (tmp_path / "nothing").mkdir()
    one_line_error(capsys, main(["serve", str(tmp_path / "nothing")]), "no runs here", "checkpoints/best.pt")


def test_a_single_run_whose_checkpoint_does_not_load_is_refused_at_start(
    run, tmp_path, capsys, one_line_error
):
    """It started, printed "serving 1 run", and said what was wrong only in the API's answers."""
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    for ck in (broken / "checkpoints").iterdir():
        ck.write_bytes(ck.read_bytes()[:200])  # truncated
    with pytest.raises(CheckpointError, match=re.escape(str(broken / "checkpoints"))):
        create_app(broken)
    code = main(["serve", str(broken), "--port", "0"])
    one_line_error(capsys, code, "vaelab serve: error:", str(broken / "checkpoints"))


def test_bad_port_is_usage_error(run):
    with pytest.raises(SystemExit) as e:
        main(["serve", str(run), "--port", "70000"])
    assert e.value.code == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nan", "must be a finite number of MiB, at least one byte, got 'nan'"),
        ("inf", "must be a finite number of MiB, at least one byte, got 'inf'"),
        ("1e308", "must be a finite number of MiB, at least one byte, got '1e308'"),
        ("-5", "must be a finite number of MiB, at least one byte, got '-5'"),
        ("0", "must be a finite number of MiB, at least one byte, got '0'"),
        ("1e-9", "must be a finite number of MiB, at least one byte, got '1e-9'"),
        ("lots", "expected a number of MiB, got 'lots'"),
    ],
)
def test_a_bad_upload_limit_is_a_usage_error_without_traceback(run, capsys, monkeypatch, value, message):
    monkeypatch.setattr("vaelab.commands.serve.bind", lambda *a: pytest.fail("bound a port"))
    with pytest.raises(SystemExit) as e:
        main(["serve", str(run), "--max-upload-mb", value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] == f"vaelab serve: error: argument --max-upload-mb: {message}"


def test_an_unknown_device_is_refused_before_the_port_is_bound(run, capsys, one_line_error, monkeypatch):
    monkeypatch.setattr("vaelab.commands.serve.bind", lambda *a: pytest.fail("bound a port"))
    code = main(["serve", str(run), "--device", "nope"])
    line = one_line_error(capsys, code)
    assert line == "vaelab serve: error: unknown device 'nope'; use cpu, cuda, cuda:N, mps or auto"


class Stopped:
    """A server stopped by Ctrl-C as soon as it runs."""

    def run(self, sockets):
        raise KeyboardInterrupt


def test_folders_not_served_are_named_with_the_reason(run, tmp_path, capsys, one_line_error, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(run, root / ".old")
    code = main(["serve", str(root), "--port", "0"])
    one_line_error(
        capsys,
        code,
        "no runs here",
        "; skipped '.old' (it starts with '.': hidden folders and '..' are not served)",
    )
    shutil.copytree(run, root / "my run")
    monkeypatch.setattr("vaelab.commands.serve.make_server", lambda app: Stopped())
    assert main(["serve", str(root), "--port", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"serving 1 run \(my run\) at http://127\.0\.0\.1:\d+/  \(Ctrl-C to stop\)", out[0])
    assert (
        out[1]
        == "note: not serving 1 folder(s): '.old' (it starts with '.': hidden folders and '..' are not served)"
    )
    assert main(["serve", str(root / "my run"), "--port", "0"]) == 0
    assert capsys.readouterr().out.startswith("serving 1 run (my run) at http://127.0.0.1:")


def test_uvicorn_failing_at_start_up_is_one_line(run, capsys, one_line_error, monkeypatch):
    class Failing:
        def run(self, sockets):
            raise SystemExit(3)  # what uvicorn does when its start-up fails

    monkeypatch.setattr("vaelab.commands.serve.make_server", lambda app: Failing())
    code = main(["serve", str(run), "--port", "0"])
    err = one_line_error(capsys, code, "stopped at start-up", "exit code 3")
    assert "Traceback" not in err


def test_loopback_names():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")


@pytest.fixture
def live(run):
    """The app on a real uvicorn server on a free loopback port, in a thread."""
    sock = bind("127.0.0.1", 0)
    server = make_server(create_app(run.parent, max_upload_bytes=100_000))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)
    sock.close()


HEAD = b"POST /api/encode HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
PART = (
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
)


def read_answer(s: socket.socket, first: bytes = b"") -> str:
    """One HTTP response: the head, then as many body bytes as its Content-Length says."""
    data = first
    s.settimeout(10)
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"content-length: *(\d+)", head, re.IGNORECASE).group(1))
    while len(body) < length:
        body += s.recv(65536)
    return (head + b"\r\n\r\n" + body).decode("latin-1")


def test_the_live_server_answers_413_before_the_body_is_sent(live):
    assert httpx.get(f"http://127.0.0.1:{live}/api/runs").json()["runs"][0]["name"] == "tiny"
    with socket.create_connection(("127.0.0.1", live), timeout=10) as s:
        s.sendall(HEAD + b"Content-Length: 500000000\r\n\r\n" + PART)  # claims 500 MB, sends 100 bytes
        answer = read_answer(s)
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "over the limit of 100000 bytes" in answer


def test_the_live_server_cuts_off_a_chunked_upload(live):
    with socket.create_connection(("127.0.0.1", live), timeout=10) as s:
        s.sendall(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(PART), PART))
        chunk = b"%x\r\n%s\r\n" % (50_000, b"x" * 50_000)
        sent = 0
        answer = b""
        s.settimeout(0.2)
        while sent < 200 and not answer:  # up to 10 MB, but the server stops us after about 100 kB
            try:
                s.sendall(chunk)
                sent += 1
                answer = s.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = read_answer(s, answer)
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "over the limit of 100000 bytes" in answer
    assert sent <= 4
