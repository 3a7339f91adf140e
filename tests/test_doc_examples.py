"""The files the docs' examples use ship with the repository (issue 22: the explorer's curl example
uploaded a `seven.png` nobody had): docs/examples/seven.png is a real mnist-5k test digit, and the
explorer's upload reader takes it as the 28x28 grey picture a demo run was trained on."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from vaelab.data.sources import load_mnist_5k
from vaelab.serve.uploads import read_image

REPO = Path(__file__).resolve().parent.parent
SEVEN = REPO / "docs" / "examples" / "seven.png"


def test_seven_png_is_mnist_5k_test_digit_18_and_the_explorer_reads_it_as_such():
    data = SEVEN.read_bytes()
    assert len(data) < 1024  # a small file
    image = read_image(data, "image/png", (1, 28, 28), invert=False, max_pixels=28 * 28)
    assert image.shape == (1, 1, 28, 28) and image.dtype == torch.uint8
    test = load_mnist_5k().test
    assert int(test.labels[18]) == 7
    assert torch.equal(image[0], test.images[18])  # pixel for pixel, white digit on black as MNIST is


def test_every_file_the_docs_upload_with_curl_exists():
    """`curl -F file=@PATH` in README.md and docs/*.md names a file of the repository (run from its root)."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    uploads = {(page.name, m) for page in pages for m in re.findall(r"file=@(\S+)", page.read_text())}
    assert ("explorer.md", "docs/examples/seven.png") in uploads
    for page, path in uploads:
        assert (REPO / path).is_file(), f"{page} uploads {path}, which is not in the repository"
