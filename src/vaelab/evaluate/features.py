"""The feature space of sample quality: a small CNN classifier that vaelab trains on the data set itself.

FID uses Inception-v3 features; Inception weights cannot be downloaded here, so the features are the
penultimate layer of a small CNN trained on the same data set's training split, cached per data set and
checksum under the user cache (loaded with weights_only=True). Numbers made with it compare models scored
with the same classifier; they are not comparable with published FID values, and every output says so.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vaelab.config import DataConfig
from vaelab.data import Prepared, epoch_batches, load_source, prepare
from vaelab.data.sources import ImageSet, cache_dir
from vaelab.errors import DataError
from vaelab.io import atomic_save

CLASSIFIER_VERSION = 2
NOT_INCEPTION = (
    "features of a CNN classifier trained by vaelab on this data set, not Inception-v3 (Inception weights "
    "cannot be downloaded here): comparable between models scored with the same classifier, not with "
    "published FID values"
)


class FeatureNet(nn.Module):
    """A small CNN classifier; `features` is its penultimate layer (the space FD and precision/recall use)."""

    def __init__(
        self, shape: tuple[int, int, int], classes: int, width: int = 16, features: int = 128
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(shape[0], width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, features),
            nn.ReLU(),
        )
        self.head = nn.Linear(features, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer [B, features] of images x [B, C, H, W]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class Classifier:
    """A trained feature network and what it is: data set, cache key, test accuracy, where it came from."""

    net: FeatureNet
    data: str
    key: str
    accuracy: float
    source: str  # "trained" or "cache"
    path: str
    seconds: float

    def describe(self) -> dict[str, Any]:
        """What eval.json says of the classifier."""
        return {
            "data": self.data,
            "test_accuracy": self.accuracy,
            "cache_key": self.key,
            "file": self.path,
            "source": self.source,
            "seconds": self.seconds,
            "architecture": f"2 conv layers (16, 32 channels) + 128-d feature layer (vaelab classifier v{CLASSIFIER_VERSION})",
        }


def _key(name: str, train: ImageSet, binary: bool, settings: dict[str, int]) -> str:
    h = hashlib.sha256()
    h.update(
        f"v{CLASSIFIER_VERSION}|{name}|{'binary' if binary else 'grey'}|{sorted(settings.items())}".encode()
    )
    h.update(str(tuple(train.images.shape)).encode())
    h.update(train.images.contiguous().numpy().tobytes())
    h.update(train.labels.contiguous().numpy().tobytes())
    return h.hexdigest()


def _cache_path(name: str, key: str):
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:40] or "data"
    return cache_dir() / "classifiers" / f"{safe}-{key[:16]}.pt"


@torch.inference_mode()
def accuracy(net: nn.Module, data: Prepared, batch_size: int = 1000) -> float:
    """Share of a split's images whose most probable class is their label.

    Args:
        net: a classifier returning logits.
        data: a labelled split.
        batch_size: images per call.
    """
    net.eval()
    right = 0
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        right += int((net(data.batch(sl)).argmax(1) == data.labels_at(sl)).sum())
    return right / len(data)


def train_classifier(
    train: ImageSet,
    test: ImageSet,
    binarize: str,
    device: torch.device | str = "cpu",
    epochs: int = 3,
    min_steps: int = 300,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> tuple[FeatureNet, float]:
    """Train the feature network on `train` (fresh Bernoulli draws per batch for binarized data, as the models
    saw it) for max(epochs, min_steps) and return it with its accuracy on `test` (one fixed draw).

    Args:
        train: the labelled training images.
        test: the labelled test images.
        binarize: the data set's binarization ("dynamic", "static" or "none").
        device: where to train.
        epochs: epochs at least.
        min_steps: steps at least.
        batch_size: images per step.
        seed: seed of the initialisation, order and draws.
        progress: draw a progress bar.
    """
    if train.labels is None or test.labels is None:
        raise DataError(
            f"{train.name}: sample quality needs a labelled data set to train its feature classifier"
        )
    mode = "dynamic" if binarize in ("dynamic", "static") else "none"
    classes = int(max(train.labels.max(), test.labels.max())) + 1
    torch.manual_seed(seed)
    net = FeatureNet(train.shape, classes).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    data = prepare(train, mode, device, seed, train=True)
    g_perm = torch.Generator().manual_seed(seed + 1)
    g_noise = torch.Generator(device=device).manual_seed(seed + 2)
    per_epoch = math.ceil(len(data) / batch_size)
    steps = max(epochs * per_epoch, min_steps)
    bar = tqdm(total=steps, disable=not progress, desc="feature classifier", unit="step")
    done = 0
    net.train()
    while done < steps:
        for idx in epoch_batches(len(data), batch_size, g_perm):
            loss = F.cross_entropy(net(data.batch(idx, g_noise)), data.labels_at(idx.to(data.images.device)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            bar.update(1)
            if done >= steps:
                break
    bar.close()
    acc = accuracy(net, prepare(test, mode, device, seed + 3, train=False))
    return net.eval(), acc


def classifier_for(
    cfg: DataConfig, device: torch.device | str = "cpu", progress: bool = False, **settings: int
) -> Classifier:
    """The feature classifier of data set `cfg.name`: from the user cache when its key (data set, training
    split checksum, binarization kind, settings) matches, else trained now and cached (atomically).

    Args:
        cfg: the run's data config.
        device: where the classifier lives.
        progress: draw a progress bar while training.
        **settings: training settings (epochs, min_steps, batch_size, seed), part of the cache key.
    """
    start = time.perf_counter()
    splits = load_source(cfg)
    if splits.train.labels is None:
        raise DataError(
            f"{cfg.name} has no labels: sample quality needs them to train its feature classifier"
        )
    binary = cfg.binarize in ("dynamic", "static")
    opts = {"epochs": 3, "min_steps": 300, "batch_size": 128, "seed": 0, **settings}
    key = _key(cfg.name, splits.train, binary, opts)
    path = _cache_path(cfg.name, key)
    classes = int(max(splits.train.labels.max(), splits.test.labels.max())) + 1
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("key") == key:
                net = FeatureNet(splits.train.shape, classes)
                net.load_state_dict(saved["state"])
                return Classifier(
                    net.to(device).eval(), cfg.name, key, float(saved["accuracy"]), "cache", str(path), 0.0
                )
        except Exception as e:  # a damaged cache file is retrained and replaced, never trusted
            warnings.warn(
                f"{path}: unreadable cached classifier ({type(e).__name__}); training a new one", stacklevel=2
            )
    net, acc = train_classifier(splits.train, splits.test, cfg.binarize, device, progress=progress, **opts)
    body = {
        "format": "vaelab-classifier",
        "key": key,
        "data": cfg.name,
        "accuracy": acc,
        "state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    atomic_save(path, lambda f: torch.save(body, f))
    return Classifier(net, cfg.name, key, acc, "trained", str(path), time.perf_counter() - start)


@torch.inference_mode()
def features(net: FeatureNet, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Penultimate-layer features [N, F] (float64) of images [N, C, H, W].

    Args:
        net: the feature network.
        images: images [N, C, H, W].
        batch_size: images per call.
    """
    net.eval()
    dev = next(net.parameters()).device
    out = [
        net.features(images[s : s + batch_size].to(dev)).double() for s in range(0, len(images), batch_size)
    ]
    return torch.cat(out)
