"""Resumable downloads with checksum verification, written to a temporary name and renamed.

A partial download is kept as `<name>.part` and continued with an HTTP Range request when the server
confirms (Content-Range) that its reply starts where the partial file ends; otherwise the file is fetched
from the start. The finished file is verified (SHA-256 of its uncompressed content, so a re-compressed copy
still matches, or a content check when no checksum is published) and only then renamed into place. A mirror
that fails or serves the wrong file is skipped for the next one, and a file that fails verification is
deleted, so the next try starts clean.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from vaelab.errors import ChecksumMismatch, DataError, DownloadError

CHUNK = 1 << 16

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)")


def _hash_content(path: Path) -> str:
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    h = hashlib.sha256()
    with gzip.open(path, "rb") if gz else open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content, decompressed first if it is gzip; DataError if it cannot be read.

    Args:
        path: the file (plain or gzip).
    """
    p = Path(path)
    try:
        return _hash_content(p)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{p}: unreadable ({e})") from None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a Content-Range header; None for what it does not state."""
    m = _CONTENT_RANGE.fullmatch((value or "").strip())
    if m is None:
        return None, None
    start, total = m.groups()
    return (None if start is None else int(start)), (None if total == "*" else int(total))


def _request(url: str, start: int, timeout: float) -> http.client.HTTPResponse:
    req = urllib.request.Request(url, headers={"User-Agent": "vaelab"})
    if start:
        req.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(req, timeout=timeout)


def _open_from(url: str, have: int, timeout: float) -> tuple[http.client.HTTPResponse | None, int]:
    """Open `url` to continue after `have` bytes: (response, offset its body starts at), or (None, have)
    when the server states that `have` bytes are the whole file. A reply that does not provably continue
    at `have` is dropped and the whole file is asked for."""
    if have:
        try:
            resp = _request(url, have, timeout)
        except urllib.error.HTTPError as e:
            if e.code != 416:
                raise
            total = _content_range(e.headers.get("Content-Range"))[1]
            e.close()
            if total == have:
                return None, have
        else:
            if resp.status != 206:  # the server ignored the range: this is the whole file
                return resp, 0
            if _content_range(resp.headers.get("Content-Range"))[0] == have:
                return resp, have
            resp.close()
    return _request(url, 0, timeout), 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _fetch_to(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Bring `part` up to the whole file at `url`, resuming from its current size when the server allows.

    Network and protocol failures propagate as they are (the caller tries the next mirror); a failure to
    write `part` is a DataError.
    """
    resp, start = _open_from(url, _size(part), timeout)
    if resp is None:
        return
    with resp:
        total = _content_range(resp.headers.get("Content-Range"))[1] if resp.status == 206 else None
        length = resp.headers.get("Content-Length")
        if total is None and length is not None:
            total = int(length) + start
        bar = tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            desc=part.name.removesuffix(".part"),
            disable=None if progress else True,  # None: shown on a terminal only, not in logs
            leave=False,
        )
        with contextlib.ExitStack() as stack:
            stack.enter_context(bar)
            try:
                f = stack.enter_context(open(part, "ab" if start else "wb"))
            except OSError as e:
                raise DataError(f"cannot write {part}: {e.strerror or e}") from None
            for block in iter(lambda: resp.read(CHUNK), b""):
                try:
                    f.write(block)
                except OSError as e:
                    raise DataError(f"cannot write {part}: {e.strerror or e}") from None
                bar.update(len(block))
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                raise DataError(f"cannot write {part}: {e.strerror or e}") from None
    if total is not None and _size(part) < total:
        raise urllib.error.URLError(f"connection closed at {_size(part)} of {total} bytes")


def _reason(e: BaseException) -> str:
    """One line saying why a mirror failed."""
    if isinstance(e, urllib.error.HTTPError):
        text = f"HTTP {e.code} {e.reason}"
    elif isinstance(e, http.client.HTTPException):
        text = f"bad HTTP reply: {type(e).__name__} {e!s}"
    else:
        text = str(getattr(e, "reason", e))
    return " ".join(text.split())


def _verify(part: Path, sha256: str | None, check: Callable[[Path], object] | None) -> None:
    """Nothing when the downloaded `part` is the wanted file; else ChecksumMismatch, or DataError for damaged
    or wrong content, saying why."""
    if sha256 is not None:
        try:
            got = _hash_content(part)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"damaged content: {' '.join(str(e).split())}") from None
        if got != sha256:
            raise ChecksumMismatch(f"checksum mismatch: content sha256 {got}, expected {sha256}")
    elif check is not None:
        try:
            check(part)
        except DataError as e:
            raise DataError(f"wrong content: {str(e).removeprefix(f'{part}: ')}") from None


def _discard(part: Path) -> None:
    with contextlib.suppress(OSError):
        part.unlink()


def download(
    urls: list[str],
    dest: str | os.PathLike,
    sha256: str | None,
    timeout: float = 30.0,
    progress: bool = True,
    check: Callable[[Path], object] | None = None,
) -> Path:
    """Download `dest` from the first mirror that serves the right file, verified against `sha256` (of the
    uncompressed content) or, when that is None, by `check` (which raises DataError on wrong content).

    A mirror that fails, or whose file fails verification, is skipped for the next; when all fail, one error
    names every mirror and what went wrong with it: ChecksumMismatch when some mirror served a file whose
    checksum differs, DownloadError otherwise (DataError for a folder or file that cannot be written).

    Args:
        urls: the mirrors' URLs of the file, tried in order.
        dest: where the file is kept.
        sha256: SHA-256 of the file's uncompressed content, or None when none is published.
        timeout: seconds to wait for a mirror's reply.
        progress: show a progress bar on a terminal.
        check: reads the file and raises DataError when it is not what it should be (used without sha256).
    """
    target = Path(dest)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create folder {target.parent}: {e.strerror or e}") from None
    part = target.with_name(target.name + ".part")
    failures = []
    mismatched = False
    for url in urls:
        try:
            _fetch_to(url, part, timeout, progress)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            failures.append(f"{url} ({_reason(e)})")
            continue
        try:
            _verify(part, sha256, check)
        except DataError as e:
            _discard(part)
            failures.append(f"{url} ({e})")
            mismatched = mismatched or isinstance(e, ChecksumMismatch)
            continue
        try:
            os.replace(part, target)
        except OSError as e:
            raise DataError(f"cannot write {target}: {e.strerror or e}") from None
        return target
    kept = _size(part)
    resume = f"; the {kept} bytes received are kept in {part} and the next try continues them" if kept else ""
    raise (ChecksumMismatch if mismatched else DownloadError)(
        "download failed: " + "; ".join(failures) + resume
    )
