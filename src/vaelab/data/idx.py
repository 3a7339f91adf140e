"""IDX files (LeCun's MNIST format): a magic number, big-endian dimensions, then the raw array.

The reader checks the magic number, the dimensions and the byte count before allocating anything,
so a corrupt or hostile header (say, one claiming 10^12 items) is refused with a message naming the file.
"""

from __future__ import annotations

import gzip
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

# Refuse headers that claim more than this many bytes of payload (4 GiB): no real image set is larger.
MAX_PAYLOAD_BYTES = 1 << 32


def _open(path: Path):
    with open(path, "rb") as f:
        head = f.read(2)
    return gzip.open(path, "rb") if head == b"\x1f\x8b" else open(path, "rb")


def read_idx(path: str | os.PathLike, max_bytes: int = MAX_PAYLOAD_BYTES) -> np.ndarray:
    """Read a raw or gzip-compressed IDX file into a numpy array (native byte order)."""
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
                    f"{p}: header claims {expected} bytes of data (dimensions {dims}), over the limit"
                )
            payload = f.read(expected + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{p}: unreadable ({e})") from None
    if len(payload) < expected:
        raise DataError(f"{p}: truncated: {len(payload)} of {expected} data bytes for dimensions {dims}")
    if len(payload) > expected:
        raise DataError(f"{p}: {len(payload) - expected}+ bytes beyond the dimensions {dims} in its header")
    return np.frombuffer(payload, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="), copy=True)


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
