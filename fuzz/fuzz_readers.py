"""Coverage-guided fuzzing of vaelab's readers of outside bytes with atheris (libFuzzer for Python).

    python fuzz/fuzz_readers.py -atheris_runs=20000          # or any libFuzzer flags, e.g. -max_total_time=600

Each input goes to the IDX reader, the image reader, the .mat reader, the checkpoint reader and the config
parser; anything but a vaelab error is a crash that libFuzzer reports with the input that caused it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import atheris
import numpy  # noqa: F401  (loaded before instrumentation: only vaelab's own code is instrumented)
import PIL.Image  # noqa: F401
import scipy.io  # noqa: F401
import torch  # noqa: F401
import yaml  # noqa: F401

with atheris.instrument_imports(include=["vaelab"]):
    from vaelab.config import build_config
    from vaelab.data.folder import read_image
    from vaelab.data.idx import read_idx
    from vaelab.data.sources import parse_frey
    from vaelab.errors import VaelabError
    from vaelab.train.checkpoint import read_checkpoint

WORK = tempfile.mkdtemp(prefix="vaelab-fuzz-")


def _write(name: str, data: bytes) -> str:
    path = os.path.join(WORK, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_one_input(data: bytes) -> None:
    """Feed one input to every reader; only VaelabError may come out."""
    readers = (
        lambda: read_idx(_write("f.idx", data)),
        lambda: read_image(_write("f.png", data), 8, 1),
        lambda: parse_frey({"frey_rawface.mat": _write("frey_rawface.mat", data)}),
        lambda: read_checkpoint(_write("c.pt", data)),
        lambda: build_config(_write("c.yaml", data)),
    )
    for read in readers:
        with contextlib.suppress(VaelabError):
            read()


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
