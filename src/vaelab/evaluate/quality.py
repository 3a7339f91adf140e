"""Sample quality: the Fréchet distance (Heusel et al. 2017) and precision and recall (Kynkäänniemi et al.
2019) between model samples and test images, on the features of a classifier that vaelab trains itself
(`vaelab.evaluate.features`: not Inception, whose weights cannot be downloaded here, and every output says so).

FD = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) between Gaussians fitted to the two feature sets.
Precision is the share of samples inside the k-NN ball (k = 3) of some test image, recall the share of test
images inside the k-NN ball of some sample: realism and coverage, apart. As an estimator (`--quality N`) it
runs on rank 0 for any model that can draw (`capabilities(model)`: a sampler, a prior, or an autoencoder's
decoder fed codes from a Gaussian fitted to its training codes).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vaelab.data import Prepared, prepare_split
from vaelab.distributions.sampling import sample
from vaelab.errors import ConfigError, VaelabError
from vaelab.evaluate.estimators import Context, Estimate, register_estimator
from vaelab.evaluate.features import (
    CLASSIFIER_VERSION,
    NOT_INCEPTION,
    Classifier,
    FeatureNet,
    accuracy,
    classifier_for,
    features,
    train_classifier,
)
from vaelab.models.protocol import capabilities

__all__ = [
    "CLASSIFIER_VERSION",
    "NOT_INCEPTION",
    "Classifier",
    "FeatureNet",
    "accuracy",
    "classifier_for",
    "covered",
    "features",
    "frechet_distance",
    "frechet_from_moments",
    "knn_radii",
    "model_images",
    "precision_recall",
    "sample_quality",
    "train_classifier",
    "training_codes",
]


def frechet_from_moments(mu1: torch.Tensor, s1: torch.Tensor, mu2: torch.Tensor, s2: torch.Tensor) -> float:
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)): the Fréchet (2-Wasserstein squared) distance of two
    Gaussians. Tr (S1 S2)^(1/2) is the sum of the square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2).

    Args:
        mu1: the first Gaussian's mean [F].
        s1: its covariance [F, F].
        mu2: the second Gaussian's mean [F].
        s2: its covariance [F, F].
    """
    mu1, s1, mu2, s2 = (t.double() for t in (mu1, s1, mu2, s2))
    w, v = torch.linalg.eigh((s1 + s1.T) / 2)
    root = (v * w.clamp(min=0).sqrt()) @ v.T
    m = root @ s2 @ root
    cross = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    fd = (mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * cross
    return max(float(fd), 0.0)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted (mean, unbiased covariance) to feature sets [N, F].

    Args:
        a: one feature set [N, F].
        b: the other [M, F].
    """
    if len(a) < 2 or len(b) < 2:
        raise ConfigError("the Fréchet distance needs at least 2 items in each set")
    a, b = a.double(), b.double()
    return frechet_from_moments(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def knn_radii(x: torch.Tensor, k: int = 3, chunk: int = 2000) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row (the radius of its k-NN ball).

    Args:
        x: points [N, F].
        k: which neighbour.
        chunk: rows of the distance table computed at a time.
    """
    if len(x) <= k:
        raise ConfigError(f"k-NN radii with k = {k} need more than {k} items, got {len(x)}")
    return torch.cat(
        [torch.cdist(x[s : s + chunk], x).kthvalue(k + 1, dim=1).values for s in range(0, len(x), chunk)]
    )


def covered(
    queries: torch.Tensor, refs: torch.Tensor, radii: torch.Tensor, chunk: int = 2000
) -> torch.Tensor:
    """For each query, whether it lies inside the k-NN ball of at least one reference point (bool [N]).

    Args:
        queries: points [N, F].
        refs: reference points [M, F].
        radii: the k-NN radius of each reference point [M].
        chunk: rows of the distance table computed at a time.
    """
    return torch.cat(
        [
            (torch.cdist(queries[s : s + chunk], refs) <= radii[None]).any(1)
            for s in range(0, len(queries), chunk)
        ]
    )


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of `fake` against `real` features.

    Args:
        real: features of real images [N, F].
        fake: features of samples [M, F].
        k: the neighbour whose distance is each point's radius.
    """
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
    """n images in [0, 1] from a model, and how they were made: its own sampler when it is one, else the
    decoded mean of p(x|z) for z ~ p(z), else (no prior: an autoencoder) z from a Gaussian fitted to codes.

    Args:
        model: the model.
        n: how many images.
        generator: the draws' generator.
        train_codes: codes of training images [N, D], for a model without a prior.
        batch_size: images per call.
    """
    from vaelab.models.autoencoder import fitted_gaussian

    caps = capabilities(model)
    dev = next(model.parameters()).device
    out, how = [], ""
    for s in range(0, n, batch_size):
        b = min(batch_size, n - s)
        if caps.sampler:
            out.append(model.generate(b, generator))
            how = "the model's generate(n): its own sampler"
        elif caps.prior and caps.decode:
            out.append(model.decode(sample(model.prior(), (b,), generator)).mean)
            how = "decoded means of p(x|z), z ~ p(z)"
        elif caps.decode and train_codes is not None:
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
    images are one Bernoulli draw); the draw rate of the sampler is reported in images per second (after an
    untimed warm-up).

    Args:
        model: a model that can draw (see `model_images`).
        test: the split whose first n images are compared.
        classifier: the feature classifier (`classifier_for`).
        n: samples and images compared (more than k).
        seed: the samples' seed.
        k: the k of the k-NN balls.
        train_codes: codes of training images, for a model without a prior.
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
    """Codes E[z|x] [N, D] of (the first `limit`) training images: what an autoencoder's samples are fitted to.

    Args:
        model: a model with an encoder.
        data: the training split.
        limit: at most this many images.
        batch_size: images per call.
    """
    n = min(limit, len(data))
    return torch.cat(
        [model.encode(data.batch(slice(s, min(s + batch_size, n)))).mean for s in range(0, n, batch_size)]
    )


def refuse(ctx: Context) -> None:
    """Sample quality trains its feature classifier on the run's data: a bare model has none.

    Args:
        ctx: the evaluation's context.
    """
    if ctx.config is None:
        raise ConfigError(
            "quality needs a run folder or checkpoint: its feature classifier is trained on the run's data"
        )


def _notes(est: Estimate, _meta: Mapping[str, Any]) -> list[str]:
    q = est.extras
    rate = f", {q['images_per_second']:.1f} images/s" if q.get("images_per_second") else ""
    return [
        f"sample quality, {est.settings['num_samples']} samples vs {est.settings['num_test_images']} images: "
        f"Fréchet distance {q['frechet_distance']:.3f}, precision {q['precision']:.3f}, recall "
        f"{q['recall']:.3f} (k={est.settings['k']}){rate}",
        f"  classifier test accuracy {100 * q['classifier']['test_accuracy']:.2f}%; {q['features']}",
    ]


SETTINGS = ("num_samples", "num_test_images", "k", "seed")


def _block(est: Estimate, dims: int) -> dict[str, Any]:
    """The generic block without num_images: its count is num_samples."""
    return {k: v for k, v in est.to_json(dims).items() if k != "num_images"}


@register_estimator(
    "quality",
    applies=lambda caps, settings: settings.quality > 0,
    refuse=refuse,
    every_rank=False,
    notes=_notes,
    to_json=_block,
    description="Fréchet distance, precision and recall of samples (--quality N)",
)
def quality(ctx: Context) -> Estimate:
    """Sample quality of settings.quality samples against as many images of the split.

    Args:
        ctx: the evaluation's context (with the run's config).
    """
    codes = None
    if not ctx.caps.sampler and not ctx.caps.prior:
        codes = training_codes(ctx.model, prepare_split(ctx.config.data, "train", ctx.device))
    clf = classifier_for(ctx.config.data, ctx.device, progress=ctx.settings.progress)
    q = sample_quality(ctx.model, ctx.data, clf, ctx.settings.quality, ctx.settings.seed, train_codes=codes)
    return Estimate(
        "quality",
        q["method"],
        settings={k: q[k] for k in SETTINGS},
        n=q["num_samples"],
        seconds=q["seconds"],
        extras={k: v for k, v in q.items() if k not in (*SETTINGS, "method", "seconds")},
    )
