"""Helpers shared by the tests (a module with a unique name, so no test folder's conftest can shadow it)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vaelab.config import Config
from vaelab.data.download import content_sha256
from vaelab.data.idx import write_idx
from vaelab.data.sources import FileSource, FileSpec, _parse_mnist_like

MNIST_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def write_tiny_mnist(folder: Path, mnist5k, n_train: int = 200, n_test: int = 100) -> Path:
    """A small MNIST-format folder (real digits from mnist-5k) as gzip IDX files."""
    folder.mkdir(parents=True, exist_ok=True)
    tr, te = mnist5k.train, mnist5k.test
    arrays = (
        tr.images[:n_train, 0].numpy(),
        tr.labels[:n_train].numpy().astype(np.uint8),
        te.images[:n_test, 0].numpy(),
        te.labels[:n_test].numpy().astype(np.uint8),
    )
    for name, arr in zip(MNIST_NAMES, arrays):
        write_idx(folder / name, arr)
    return folder


def tiny_source(
    folder: Path, name: str = "tiny", mirrors: tuple[str, ...] = (), system_dirs=()
) -> FileSource:
    """A FileSource whose checksums are those of the files in `folder`."""
    files = tuple(FileSpec(n, content_sha256(folder / n)) for n in MNIST_NAMES)
    return FileSource(
        name=name,
        files=files,
        mirrors=mirrors,
        parse=lambda found: _parse_mnist_like(found, name),
        system_dirs=tuple(str(d) for d in system_dirs),
    )


def small_config(**flat) -> Config:
    """A config that trains in about a second: sklearn's 8x8 digits, a small MLP, no progress bars."""
    base = {
        "data.name": "digits",
        "model.hidden": (32,),
        "model.latent_dim": 2,
        "train.epochs": 2,
        "train.batch_size": 64,
        "train.progress": False,
        "train.threads": 1,
    }
    base.update(flat)
    return Config().replace(**base)


def assert_one_line_error(capsys, code: int, *needles: str) -> str:
    """The command failed with exit code 1 and exactly one stderr line containing every needle."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1, err
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# `vaelab train` flags for a run of seconds on the 8x8 digits (one epoch, one thread, no progress bar).
TINY_TRAIN = [
    "--data",
    "digits",
    "--hidden",
    "32",
    "--latent-dim",
    "2",
    "--epochs",
    "1",
    "--quiet",
    "--threads",
    "1",
]


def tiny_frey_face(root: Path, frames: int = 300) -> Path:
    """A data folder with a frey-face/frey_rawface.mat of `frames` 28x20 frames (a blob drifting on grey)."""
    import scipy.io

    rows, cols = np.mgrid[:28, :20]
    noise = np.random.default_rng(0).normal(0, 5, (frames, 28, 20))
    t = np.arange(frames)[:, None, None] / frames
    blob = 150 * np.exp(-((rows - 6 - 16 * t) ** 2 + (cols - 4 - 12 * t) ** 2) / 20)
    ff = np.clip(90 + blob + noise, 0, 255).astype(np.uint8).reshape(frames, 560).T
    (root / "frey-face").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "frey-face" / "frey_rawface.mat", {"ff": ff})
    return root


def labels_alone_error(cfg: Config, epochs: int, batch: int) -> float:
    """Test error of `cfg`'s model's own classifier (`classify`) trained by cross-entropy on the labelled
    training images alone (full batch, Adam at train.lr, as many steps as `epochs` of batches of `batch`):
    the bar a semi-supervised model must clear."""
    import math

    from vaelab.data import load_data, prepare, prepare_split
    from vaelab.evaluate.classification import classification_error
    from vaelab.models.registry import build_model

    split = load_data(cfg.data).train
    labelled = prepare(
        split.subset((split.labels >= 0).nonzero().flatten()), cfg.data.binarize, "cpu", 0, train=True
    )
    torch.manual_seed(0)
    alone = build_model(cfg.model, labelled.shape)
    opt = torch.optim.Adam([p for p in alone.parameters() if p.requires_grad], lr=cfg.train.lr)
    x = labelled.batch(slice(None))
    for _ in range(epochs * math.ceil(len(split) / batch)):
        loss = -alone.classify(x).log_prob(labelled.labels).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return classification_error(alone.eval(), prepare_split(cfg.data, "test"))["error"]


def default_sigint() -> None:
    """preexec_fn of a child that a test sends Ctrl-C: SIGINT at its default. An ignored signal is inherited,
    and a pytest-xdist worker can be left ignoring SIGINT by a library's worker pool; the child's Python would
    then ignore Ctrl-C (as it should under `cmd &`)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def linear_output_dtypes() -> Iterator[set[tuple[bool, torch.dtype]]]:
    """The (module.training, output dtype) pairs of every nn.Linear call while open (a global forward hook)."""
    seen: set[tuple[bool, torch.dtype]] = set()

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Linear):
            seen.add((module.training, output.dtype))

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


# The report's picture cards by heading, and the figure (`vaelab.viz.figureset.FIGURES`) each must show. Spelt
# out here, not read from `vaelab.viz.report`, so a card showing another card's figure is caught.
REPORT_PICTURE_HEADINGS = {
    "Samples": "samples",
    "Reconstructions": "reconstructions",
    "Latent manifold": "manifold",
    "Interpolations": "interpolations",
    "Latent scatter": "latents",
}


def assert_report_cards_show(page: str, figures: dict[str, Path]) -> None:
    """Every figure card of a report page shows, pixel for pixel, the PNG `figures` gives for its heading, and
    the page has no other figure card."""
    import base64
    import html
    import io
    import re

    from PIL import Image

    cards = re.findall(r'<figure class="card"><h3>([^<]*)</h3><img src="data:image/png;base64,([^"]*)"', page)
    assert sorted(html.unescape(title) for title, _ in cards) == sorted(figures)
    for title, data in cards:
        with (
            Image.open(io.BytesIO(base64.b64decode(data))) as shown,
            Image.open(figures[html.unescape(title)]) as png,
        ):
            np.testing.assert_array_equal(np.asarray(shown), np.asarray(png), err_msg=title)


def capture_decoded(monkeypatch) -> list[torch.Tensor]:
    """Every z handed to `vaelab.viz.figures.decoded` from now on (still decoded), in call order."""
    from vaelab.viz import figures as fig

    seen: list[torch.Tensor] = []
    real = fig.decoded

    def decoded(model, z):
        seen.append(z.detach().clone())
        return real(model, z)

    monkeypatch.setattr(fig, "decoded", decoded)
    return seen


def manifold_grid(n: int, centre: torch.Tensor, dims: tuple[int, int], scales) -> torch.Tensor:
    """The manifold's n x n grid of z [n, n, D] as `vaelab manifold` documents it: about `centre`, z[dims[0]]
    rises along a row and z[dims[1]] falls down a column at the Gaussian quantiles Φ⁻¹((i + 0.5) / n) times
    `scales`; every other dimension stays at the centre."""
    from scipy.stats import norm

    q = torch.from_numpy(norm.ppf((np.arange(n) + 0.5) / n))
    z = centre.double().expand(n, n, -1).clone()
    z[:, :, dims[0]] += float(scales[0]) * q[None, :]
    z[:, :, dims[1]] += float(scales[1]) * q.flip(0)[:, None]
    return z
