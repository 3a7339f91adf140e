"""IDX files (LeCun's MNIST format): a magic number, big-endian dimensions, then the raw array.

The reader checks the magic number, the dimensions and the byte count before allocating anything,
so a corrupt or hostile header (say, one claiming 10^12 items) is refused with a message naming the file.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from vaelab.errors import DataError
from vaelab.io import atomic_write_bytes

# IDX type codes (third byte of the magic number) and the numpy types they hold.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}

# Refuse headers that claim more than this many bytes of payload (1 GiB; MNIST's largest file holds 47 MB).
# Pass `max_bytes` to read_idx to raise it.
MAX_PAYLOAD_BYTES = 1 << 30
# The payload is read in pieces of this size (gzip's reader makes a temporary copy of each read).
_CHUNK = 1 << 20


def _open(path: Path) -> io.BufferedIOBase:
    with open(path, "rb") as f:
        head = f.read(2)
    return gzip.open(path, "rb") if head == b"\x1f\x8b" else open(path, "rb")


def _read_payload(f: io.BufferedIOBase, expected: int) -> tuple[np.ndarray, int]:
    """Read up to `expected` bytes into one uint8 buffer grown by doubling, so a short stream costs
    about what it holds rather than what its header claims; returns the buffer and the bytes read."""
    buf = np.empty(min(expected, _CHUNK), np.uint8)
    n = 0
    while n < expected:
        if n == len(buf):
            buf.resize(min(expected, 2 * n), refcheck=False)  # realloc: no second copy of the data
        with memoryview(buf) as view:
            got = f.readinto(view[n : min(len(buf), n + _CHUNK)])
        if not got:
            break
        n += got
    return buf, n


def read_idx(path: str | os.PathLike, max_bytes: int = MAX_PAYLOAD_BYTES) -> np.ndarray:
    """Read a raw or gzip-compressed IDX file into a numpy array (native byte order).

    Memory is the payload's size (plus 1 MiB); a stream shorter or longer than its header says
    is refused, the longer one as soon as one byte too many is read.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"IDX file not found: {p}")
    try:
        with _open(p) as f:
            magic = f.read(4)
            if len(magic) < 4:
                raise DataError(f"{p}: truncated IDX header ({len(magic)} of 4 bytes)")
            zero, code, ndim = struct.unpack(">HBB", magic)
            if zero != 0 or code not in _DTYPES or not 1 <= ndim <= 8:
                raise DataError(f"{p}: not an IDX file (magic number 0x{magic.hex()})")
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DataError(f"{p}: truncated IDX header (dimensions)")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            dtype = _DTYPES[code]
            expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
            if expected > max_bytes:
                raise DataError(
                    f"{p}: header claims {expected} bytes of data (dimensions {dims}), "
                    f"over the limit of {max_bytes} (read_idx's max_bytes)"
                )
            buf, got = _read_payload(f, expected)
            extra = f.read(1) if got == expected else b""
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{p}: unreadable ({e})") from None
    if got < expected:
        raise DataError(f"{p}: truncated: {got} of {expected} data bytes for dimensions {dims}")
    if extra:
        raise DataError(f"{p}: {len(extra)}+ bytes beyond the dimensions {dims} in its header")
    try:
        arr = buf.view(dtype).reshape(dims)
    except ValueError as e:  # e.g. a zero beside dimensions whose product numpy cannot represent
        raise DataError(f"{p}: the dimensions {dims} in its header make no array ({e})") from None
    return arr if dtype.isnative else arr.byteswap(inplace=True).view(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write an array as IDX (gzip if the name ends in .gz or `compress` is set), atomically."""
    p = Path(path)
    arr = np.asarray(array)
    key = arr.dtype.newbyteorder("=")
    if key not in _CODES:
        raise DataError(f"IDX cannot hold dtype {arr.dtype}")
    code = _CODES[key]
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    body = header + arr.astype(_DTYPES[code], copy=False).tobytes()
    if compress if compress is not None else p.suffix == ".gz":
        body = gzip.compress(body, mtime=0)
    return atomic_write_bytes(p, body)
