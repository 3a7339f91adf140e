"""Sample quality: Fréchet distance against closed forms, k-NN precision and recall on sets whose answer is
known, and the feature classifier (accuracy, cache, damaged cache)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.linalg import sqrtm

from vaelab.config import DataConfig
from vaelab.evaluate.quality import (
    classifier_for,
    frechet_distance,
    frechet_from_moments,
    knn_radii,
    precision_recall,
)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gaussian(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(n, len(mean), generator=g, dtype=torch.float64)
    return mean + eps @ torch.linalg.cholesky(cov).T


def test_frechet_of_a_set_with_itself_is_zero_and_a_shift_adds_its_square():
    x = gaussian(500, torch.zeros(6, dtype=torch.float64), torch.eye(6, dtype=torch.float64) * 2, 0)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, 1.0], dtype=torch.float64)
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-9)


def test_frechet_from_moments_equals_the_closed_form():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5, 5, generator=g, dtype=torch.float64)
    b = torch.randn(5, 5, generator=g, dtype=torch.float64)
    s1, s2 = a @ a.T + 0.1 * torch.eye(5), b @ b.T + 0.1 * torch.eye(5)
    m1, m2 = (
        torch.randn(5, generator=g, dtype=torch.float64),
        torch.randn(5, generator=g, dtype=torch.float64),
    )
    cross = sqrtm((s1 @ s2).numpy()).real.trace()
    want = float((m1 - m2) @ (m1 - m2) + s1.trace() + s2.trace() - 2 * cross)
    assert frechet_from_moments(m1, s1, m2, s2) == pytest.approx(want, rel=1e-8)
    # commuting (diagonal) covariances: |m1 - m2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    d1, d2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 4.0, 1.0])
    assert frechet_from_moments(torch.zeros(3), d1.diag(), torch.ones(3), d2.diag()) == pytest.approx(
        3 + 1 + 0 + 4
    )


def test_frechet_of_samples_approaches_the_closed_form_of_their_gaussians():
    """N(0, I) against N(m, 4 I) in 4-d: FD = |m|^2 + 4 (2 - 1)^2; with 20,000 draws each the estimate's
    error is a few hundredths (its bias is about Tr of the covariances' sampling noise, ~ d^2 / N)."""
    d = 4
    m = torch.tensor([1.0, 0.0, -1.0, 2.0], dtype=torch.float64)
    x = gaussian(20_000, torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64), 2)
    y = gaussian(20_000, m, 4 * torch.eye(d, dtype=torch.float64), 3)
    assert frechet_distance(x, y) == pytest.approx(float(m @ m) + d, abs=0.15)


def test_precision_and_recall_of_identical_disjoint_and_half_covering_sets():
    g = torch.Generator().manual_seed(4)
    real = torch.randn(300, 8, generator=g, dtype=torch.float64)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    far = real + 100.0
    assert precision_recall(real, far) == (0.0, 0.0)
    # two well-separated clusters in `real`, samples like the first only: precision is what it is against the
    # first cluster alone (the far balls hold no sample), recall exactly halves (the far images are uncovered)
    one = torch.randn(150, 8, generator=g, dtype=torch.float64)
    p_near, r_near = precision_recall(real[:150], one)
    assert p_near > 0.7 and r_near > 0.7  # finite sets in 8-d: k-NN balls cover most, not all, of the density
    p, r = precision_recall(torch.cat([real[:150], real[150:] + 50.0]), one)
    assert p == p_near and r == pytest.approx(r_near / 2)


def test_knn_radii_are_the_kth_neighbour_distance_excluding_itself():
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]], dtype=torch.float64)
    torch.testing.assert_close(
        knn_radii(x, k=1), torch.tensor([1.0, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    )
    torch.testing.assert_close(
        knn_radii(x, k=3), torch.tensor([6.0, 5.0, 3.0, 5.0, 9.0], dtype=torch.float64)
    )


def test_classifier_is_accurate_cached_and_retrained_when_damaged():
    cfg = DataConfig(name="digits")
    first = classifier_for(cfg, min_steps=200, batch_size=64, epochs=1)
    assert first.source == "trained" and first.accuracy > 0.8  # binarized 8x8 digits; chance is 0.1
    again = classifier_for(cfg, min_steps=200, batch_size=64, epochs=1)
    assert again.source == "cache" and again.key == first.key and again.accuracy == first.accuracy
    for k, v in first.net.state_dict().items():
        assert torch.equal(v, again.net.state_dict()[k])
    assert "classifiers" in again.path
    with open(again.path, "r+b") as f:
        f.write(b"garbage")
    with pytest.warns(UserWarning, match="unreadable cached classifier"):
        third = classifier_for(cfg, min_steps=200, batch_size=64, epochs=1)
    assert third.source == "trained" and math.isclose(third.accuracy, first.accuracy)
    other = classifier_for(
        cfg.__class__(name="digits", binarize="none"), min_steps=50, batch_size=64, epochs=1
    )
    assert other.key != first.key


def test_sample_quality_of_samples_that_are_the_test_images_is_perfect():
    """A sampler that draws exactly the first n test images scores FD 0 and precision = recall = 1 (binary
    pictures are their own Bernoulli draw); the next n test images do not; blank samples (identical: k-NN balls
    of radius 0) cover no digit."""
    from torch import nn

    from vaelab.data import prepare_split
    from vaelab.evaluate.quality import sample_quality

    class Replay(nn.Module):
        def __init__(self, images: torch.Tensor) -> None:
            super().__init__()
            self.images = images
            self.weight = nn.Parameter(torch.zeros(1))  # where the model lives

        def generate(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
            return self.images[:n]

    cfg = DataConfig(name="digits")
    test = prepare_split(cfg, "test")
    assert test.binary
    clf = classifier_for(cfg, min_steps=200, batch_size=64, epochs=1)
    same = sample_quality(Replay(test.batch(slice(0, 100))), test, clf, 100)
    assert (
        same["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
        and same["precision"] == same["recall"] == 1.0
    )
    assert same["num_samples"] == same["num_test_images"] == 100 and same["k"] == 3
    other = sample_quality(Replay(test.batch(slice(100, 200))), test, clf, 100)
    assert other["frechet_distance"] > 1.0 and other["recall"] < 1.0
    blank = sample_quality(Replay(torch.zeros(100, *test.shape)), test, clf, 100)
    assert blank["recall"] == 0.0 and blank["frechet_distance"] > 10 * other["frechet_distance"]
