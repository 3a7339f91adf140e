"""IDX reader/writer: round trips, and corrupt files refused with messages that name them."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vaelab.data.idx import read_idx, write_idx
from vaelab.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@settings(max_examples=40, deadline=None)
@given(
    arr=st.sampled_from(DTYPES).flatmap(
        lambda dt: arrays(dt, st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple), elements=None)
    ),
    gz=st.booleans(),
)
def test_round_trip(tmp_path_factory, arr, gz):
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, arr)
    back = read_idx(path)
    assert back.shape == arr.shape and back.dtype == arr.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, arr)


def _header(code: int, dims: tuple[int, ...]) -> bytes:
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


def test_truncated_file_is_rejected(tmp_path):
    p = tmp_path / "t.idx"
    p.write_bytes(_header(0x08, (10, 4, 4)) + bytes(100))
    with pytest.raises(DataError, match=r"t\.idx: truncated: 100 of 160 data bytes"):
        read_idx(p)


def test_truncated_gzip_is_rejected(tmp_path):
    p = tmp_path / "t.idx.gz"
    body = gzip.compress(_header(0x08, (10, 4, 4)) + bytes(160))
    p.write_bytes(body[: len(body) // 2])
    with pytest.raises(DataError, match=r"t\.idx\.gz"):
        read_idx(p)


def test_wrong_magic_is_rejected(tmp_path):
    p = tmp_path / "m.idx"
    p.write_bytes(b"\x12\x34\x08\x01" + bytes(8))
    with pytest.raises(DataError, match=r"m\.idx: not an IDX file \(magic number 0x12340801\)"):
        read_idx(p)


def test_extra_bytes_are_rejected(tmp_path):
    p = tmp_path / "c.idx"
    p.write_bytes(_header(0x08, (3,)) + bytes(5))
    with pytest.raises(DataError, match=r"c\.idx: .*beyond the dimensions \(3,\)"):
        read_idx(p)


def test_huge_header_is_refused_before_allocation(tmp_path):
    p = tmp_path / "h.idx"
    p.write_bytes(_header(0x08, (10**6, 10**6)))  # claims 10^12 bytes; the file holds none
    with pytest.raises(DataError, match="over the limit"):
        read_idx(p)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="IDX file not found"):
        read_idx(tmp_path / "nope.idx")


def _gzip_idx(path: Path, dims: tuple[int, ...], payload_bytes: int) -> None:
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(_header(0x08, dims))
        f.write(bytes(payload_bytes))


def _peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("gz", [False, True])
def test_memory_is_about_the_payload(tmp_path, gz):
    n = 16 << 20
    p = tmp_path / ("z.idx.gz" if gz else "z.idx")
    if gz:
        _gzip_idx(p, (n // 256, 16, 16), n)
    else:
        p.write_bytes(_header(0x08, (n // 256, 16, 16)) + bytes(n))
    out = []
    peak = _peak_bytes(lambda: out.append(read_idx(p)))
    assert out[0].shape == (n // 256, 16, 16) and out[0].nbytes == n
    assert peak < n + (4 << 20)  # one buffer plus a read piece, not a payload-sized copy


@pytest.mark.parametrize("gz", [False, True])
def test_short_stream_is_refused_before_allocating_the_claim(tmp_path, gz):
    p = tmp_path / ("s.idx.gz" if gz else "s.idx")
    if gz:
        _gzip_idx(p, (1 << 16, 32, 32), 1000)  # claims 64 MiB, holds 1000 bytes
    else:
        p.write_bytes(_header(0x08, (1 << 16, 32, 32)) + bytes(1000))

    def read():
        with pytest.raises(DataError, match=r"truncated: 1000 of 67108864 data bytes"):
            read_idx(p)

    assert _peak_bytes(read) < 4 << 20


def test_longer_stream_is_refused_without_reading_it_all(tmp_path):
    p = tmp_path / "l.idx.gz"
    _gzip_idx(p, (16,), 64 << 20)  # claims 16 bytes, holds 64 MiB

    def read():
        with pytest.raises(DataError, match=r"l\.idx\.gz: 1\+ bytes beyond the dimensions \(16,\)"):
            read_idx(p)

    assert _peak_bytes(read) < 4 << 20


def test_limit_defaults_to_1_gib_and_can_be_raised(tmp_path):
    p = tmp_path / "b.idx"
    p.write_bytes(_header(0x08, (1 << 11, 1 << 10, 1 << 10)) + bytes(10))  # claims 2 GiB, holds 10 bytes
    with pytest.raises(
        DataError, match=r"claims 2147483648 bytes .* over the limit of 1073741824 \(read_idx's max_bytes\)"
    ):
        read_idx(p)
    with pytest.raises(DataError, match="truncated: 10 of 2147483648"):
        read_idx(p, max_bytes=4 << 30)


def test_big_endian_types_come_back_native_and_writable(tmp_path):
    p = tmp_path / "i.idx"
    p.write_bytes(_header(0x0B, (3,)) + np.array([-2, 1, 300], ">i2").tobytes())
    out = read_idx(p)
    assert out.dtype == np.dtype(np.int16) and out.tolist() == [-2, 1, 300] and out.flags.writeable


def test_a_zero_beside_dimensions_numpy_cannot_represent_is_refused(tmp_path):
    """Zero bytes of data, but 0 x (2^32-1)^3 is no array numpy can make (found by tests/test_fuzz.py)."""
    p = tmp_path / "odd.idx"
    p.write_bytes(struct.pack(">HBB", 0, 0x08, 4) + struct.pack(">4I", 0, 2**32 - 1, 2**32 - 1, 2**32 - 1))
    with pytest.raises(DataError, match="make no array"):
        read_idx(p)
