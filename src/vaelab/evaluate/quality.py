"""Sample quality: the Fréchet distance (Heusel et al. 2017) and precision and recall (Kynkäänniemi et al.
2019) between model samples and test images, on the features of a classifier that vaelab trains itself.

FID uses Inception-v3 features; Inception weights cannot be downloaded here, so the features are the
penultimate layer of a small CNN trained on the same data set's training split (cached per data set and
checksum under the user cache, loaded with weights_only=True). The numbers compare models scored with the
same classifier; they are not comparable with published FID values, and every output says so.

FD = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) between Gaussians fitted to the two feature sets.
Precision is the share of samples inside the k-NN ball (k = 3) of some test image, recall the share of test
images inside the k-NN ball of some sample: realism and coverage, apart.
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
from vaelab.distributions.sampling import sample
from vaelab.errors import ConfigError, DataError, VaelabError
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
    """Share of a split's images whose most probable class is their label."""
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
    saw it) for max(epochs, min_steps) and return it with its accuracy on `test` (one fixed draw)."""
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
    split checksum, binarization kind, settings) matches, else trained now and cached (atomically)."""
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
    """Penultimate-layer features [N, F] (float64) of images [N, C, H, W]."""
    net.eval()
    dev = next(net.parameters()).device
    out = [
        net.features(images[s : s + batch_size].to(dev)).double() for s in range(0, len(images), batch_size)
    ]
    return torch.cat(out)


def frechet_from_moments(mu1: torch.Tensor, s1: torch.Tensor, mu2: torch.Tensor, s2: torch.Tensor) -> float:
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)): the Fréchet (2-Wasserstein squared) distance of two
    Gaussians. Tr (S1 S2)^(1/2) is the sum of the square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2)."""
    mu1, s1, mu2, s2 = (t.double() for t in (mu1, s1, mu2, s2))
    w, v = torch.linalg.eigh((s1 + s1.T) / 2)
    root = (v * w.clamp(min=0).sqrt()) @ v.T
    m = root @ s2 @ root
    cross = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    fd = (mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * cross
    return max(float(fd), 0.0)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted (mean, unbiased covariance) to feature sets [N, F]."""
    if len(a) < 2 or len(b) < 2:
        raise ConfigError("the Fréchet distance needs at least 2 items in each set")
    a, b = a.double(), b.double()
    return frechet_from_moments(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def knn_radii(x: torch.Tensor, k: int = 3, chunk: int = 2000) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row (the radius of its k-NN ball)."""
    if len(x) <= k:
        raise ConfigError(f"k-NN radii with k = {k} need more than {k} items, got {len(x)}")
    return torch.cat(
        [torch.cdist(x[s : s + chunk], x).kthvalue(k + 1, dim=1).values for s in range(0, len(x), chunk)]
    )


def covered(
    queries: torch.Tensor, refs: torch.Tensor, radii: torch.Tensor, chunk: int = 2000
) -> torch.Tensor:
    """For each query, whether it lies inside the k-NN ball of at least one reference point (bool [N])."""
    return torch.cat(
        [
            (torch.cdist(queries[s : s + chunk], refs) <= radii[None]).any(1)
            for s in range(0, len(queries), chunk)
        ]
    )


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of `fake` against `real` features."""
    real, fake = real.double(), fake.double()
    precision = covered(fake, real, knn_radii(real, k)).double().mean()
    recall = covered(real, fake, knn_radii(fake, k)).double().mean()
    return float(precision), float(recall)


@torch.inference_mode()
def model_images(
    model: nn.Module,
    n: int,
    generator: torch.Generator,
    train_codes: torch.Tensor | None = None,
    batch_size: int = 500,
) -> tuple[torch.Tensor, str]:
    """n images in [0, 1] from a model, and how they were made: `generate` when the model has it, else the
    decoded mean of p(x|z) for z ~ p(z), else (no prior: an autoencoder) z from a Gaussian fitted to codes."""
    from vaelab.models.autoencoder import fitted_gaussian

    dev = next(model.parameters()).device
    out, how = [], ""
    for s in range(0, n, batch_size):
        b = min(batch_size, n - s)
        if hasattr(model, "generate"):
            out.append(model.generate(b, generator))
            how = "the model's generate(n): its own sampler"
        elif hasattr(model, "prior") and hasattr(model, "decode"):
            out.append(model.decode(sample(model.prior(), (b,), generator)).mean)
            how = "decoded means of p(x|z), z ~ p(z)"
        elif hasattr(model, "decode") and train_codes is not None:
            fit = fitted_gaussian(train_codes.to(dev))
            eps = torch.randn(b, fit.loc.shape[0], 1, generator=generator, device=dev)
            out.append(model.decode(fit.loc + (fit.scale_tril @ eps).squeeze(-1)).mean)
            how = "decoded means for z from a Gaussian fitted to training codes (an autoencoder has no prior)"
        else:
            raise VaelabError(
                f"sample quality does not apply to {type(model).__name__}: it cannot draw samples"
            )
    return torch.cat(out).clamp(0.0, 1.0), how


def sample_quality(
    model: nn.Module,
    test: Prepared,
    classifier: Classifier,
    n: int,
    seed: int = 0,
    k: int = 3,
    train_codes: torch.Tensor | None = None,
) -> dict[str, Any]:
    """FD, precision and recall of n model samples against the first n test images, with every setting.

    For binarized data the samples are binary draws of the model's images (Bernoulli pixels, as the test
    images are one Bernoulli draw); the draw rate of the sampler is reported in images per second (after an untimed warm-up).
    """
    if n <= k:
        raise ConfigError(f"--quality N must be more than k = {k}, got {n}")
    if n > len(test):
        raise ConfigError(f"--quality {n}: the test split has only {len(test)} images")
    dev = next(model.parameters()).device
    model_images(model, 2, torch.Generator(device=dev).manual_seed(seed + 1), train_codes)  # warm-up, untimed
    g = torch.Generator(device=dev).manual_seed(seed)
    start = time.perf_counter()
    images, how = model_images(model, n, g, train_codes)
    sampling = time.perf_counter() - start
    if test.binary:
        images = torch.bernoulli(images, generator=g)
        how += ", then Bernoulli pixels drawn from those images (the test images are one Bernoulli draw)"
    real = features(classifier.net, test.batch(slice(0, n)))
    fake = features(classifier.net, images)
    precision, recall = precision_recall(real, fake, k)
    return {
        "method": "Fréchet distance and k-NN precision/recall (Kynkäänniemi et al. 2019) on classifier features",
        "features": NOT_INCEPTION,
        "classifier": classifier.describe(),
        "num_samples": n,
        "num_test_images": n,
        "k": k,
        "seed": seed,
        "samples": how,
        "frechet_distance": frechet_distance(real, fake),
        "precision": precision,
        "recall": recall,
        "sampling_seconds": sampling,
        "images_per_second": n / sampling if sampling > 0 else None,
        "seconds": time.perf_counter() - start,
    }


@torch.inference_mode()
def training_codes(
    model: nn.Module, data: Prepared, limit: int = 10000, batch_size: int = 1000
) -> torch.Tensor:
    """Codes E[z|x] [N, D] of (the first `limit`) training images: what an autoencoder's samples are fitted to."""
    n = min(limit, len(data))
    return torch.cat(
        [model.encode(data.batch(slice(s, min(s + batch_size, n)))).mean for s in range(0, n, batch_size)]
    )
