"""IDX reader/writer: round trips, and corrupt files refused with messages that name them."""

from __future__ import annotations

import gzip
import struct

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
