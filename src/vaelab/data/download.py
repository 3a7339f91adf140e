"""Resumable downloads with checksum verification, written to a temporary name and renamed.

A partial download is kept as `<name>.part` and continued with an HTTP Range request; the finished
file is verified (SHA-256 of its uncompressed content, so a re-compressed copy still matches) and only
then renamed into place. A mismatch deletes the partial file and says so.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from vaelab.errors import DataError

CHUNK = 1 << 16


def content_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content, decompressed first if it is gzip."""
    p = Path(path)
    with open(p, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    h = hashlib.sha256()
    try:
        with gzip.open(p, "rb") if gz else open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except (OSError, EOFError) as e:
        raise DataError(f"{p}: unreadable ({e})") from None
    return h.hexdigest()


def _fetch_to(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the rest of `url` to `part`, resuming from its current size when the server allows."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "vaelab"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the part file is already complete
            return
        raise
    with resp:
        if have and resp.status != 206:  # server ignored the range: start over
            have = 0
        mode = "ab" if have else "wb"
        total = resp.headers.get("Content-Length")
        total_bytes = int(total) + have if total is not None else None
        bar = tqdm(
            total=total_bytes,
            initial=have,
            unit="B",
            unit_scale=True,
            desc=part.name.removesuffix(".part"),
            disable=not progress,
            leave=False,
        )
        with open(part, mode) as f, bar:
            for block in iter(lambda: resp.read(CHUNK), b""):
                f.write(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
        if total_bytes is not None and part.stat().st_size < total_bytes:
            raise urllib.error.URLError(f"connection closed at {part.stat().st_size} of {total_bytes} bytes")


def download(
    urls: list[str],
    dest: str | os.PathLike,
    sha256: str | None,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download the first mirror that answers to `dest`, verified against `sha256` (of the uncompressed content).

    Raises DataError naming every mirror tried when none succeeds, or the checksum when it does not match.
    """
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    failures = []
    for url in urls:
        try:
            _fetch_to(url, part, timeout, progress)
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            failures.append(f"{url} ({reason})")
            continue
        if sha256 is not None:
            got = content_sha256(part)
            if got != sha256:
                with contextlib.suppress(OSError):
                    part.unlink()
                raise DataError(
                    f"checksum mismatch for {url}: content sha256 {got}, expected {sha256}; nothing was kept"
                )
        os.replace(part, target)
        return target
    raise DataError("download failed: " + "; ".join(failures))
