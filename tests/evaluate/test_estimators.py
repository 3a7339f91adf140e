"""The table of estimators: when each applies (from capabilities and settings), refusals before any work,
the generic eval.json block of an Estimate, and a new estimator added with one registration."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from gaussian_weights import GaussianWeights, blank_split

from vaelab.errors import ConfigError, VaelabError
from vaelab.evaluate import ESTIMATORS, Estimate, EvalSettings, Evaluation, evaluate, register_estimator
from vaelab.evaluate.run import TABLE, table
from vaelab.models.protocol import Capabilities

NOTHING = Capabilities(
    importance=False,
    prior=False,
    encode=False,
    decode=False,
    latent_dim=None,
    total_latent_dim=None,
    num_classes=None,
    conditional=False,
    classifier=False,
    class_terms=False,
    exact_likelihood=False,
    exact_log_px=False,
    sampler=False,
    own_latent_terms=False,
    mean_image=False,
    observation=False,
    param_groups=False,
    importance_cost=1,
)
VAE = dataclasses.replace(NOTHING, importance=True, prior=True, encode=True, decode=True, latent_dim=2)
M2 = dataclasses.replace(VAE, classifier=True, num_classes=10)
PIXELCNN = dataclasses.replace(NOTHING, exact_likelihood=True, exact_log_px=True, sampler=True)
GAN = dataclasses.replace(NOTHING, prior=True, decode=True, latent_dim=4, sampler=True, observation=True)
AUTOENCODER = dataclasses.replace(NOTHING, encode=True, decode=True, latent_dim=2)


def applying(caps: Capabilities, **settings) -> list[str]:
    s = EvalSettings(**settings)
    return [e.name for e in table() if e.applies(caps, s)]


def test_the_package_table_in_its_order():
    assert [e.name for e in table()][: len(TABLE)] == list(TABLE)
    assert set(TABLE) <= set(ESTIMATORS)


@pytest.mark.parametrize(
    ("caps", "settings", "names"),
    [
        (VAE, {}, ["elbo", "importance", "psis"]),
        (VAE, {"importance": 20}, ["elbo", "importance"]),
        (
            VAE,
            {"ais": 5, "bdmc": 3, "decomposition": True, "quality": 10},
            ["elbo", "importance", "psis", "ais", "bdmc", "decomposition", "quality"],
        ),
        (M2, {}, ["elbo", "importance", "psis", "classification"]),
        (PIXELCNN, {"quality": 10}, ["exact", "quality"]),
        (GAN, {"ais": 4}, ["ais"]),
        (GAN, {}, ["elbo", "importance", "psis"]),  # importance then refuses: no encoder
        (AUTOENCODER, {"quality": 10}, ["quality"]),
    ],
)
def test_what_applies_follows_from_capabilities_and_settings(caps, settings, names):
    assert applying(caps, **settings) == names


def test_estimate_writes_the_generic_block():
    est = Estimate(
        "x",
        "a method",
        settings={"num_samples": 5},
        log_px=-10.0,
        stderr=0.5,
        n=3,
        seconds=1.5,
        extras={"ess_mean": 2.0},
        per_datum=torch.tensor([-9.0, -10.0, -11.0]),
    )
    assert est.to_json(dims=4) == {
        "method": "a method",
        "num_samples": 5,
        "log_px": -10.0,
        "stderr": 0.5,
        "nll": 10.0,
        "bits_per_dim": 10.0 / (4 * math.log(2)),
        "ess_mean": 2.0,
        "num_images": 3,
        "seconds": 1.5,
        "per_datum": [-9.0, -10.0, -11.0],
    }
    assert Estimate("y", "").to_json(4) == {}
    ev = Evaluation({"split": "test"}, {"bdmc": Estimate("bdmc", "b"), "importance": est}, dims=4)
    assert ev.num_images == 3 and list(ev.to_json()) == [
        "split",
        "num_images",
        "bdmc",
        "importance",
        "seconds",
        "versions",
    ]


def test_refusals_come_before_any_importance_sampling(monkeypatch):
    from vaelab.evaluate import importance

    def never(*_a, **_k):
        raise AssertionError("importance sampling ran before the refusal")

    monkeypatch.setattr(importance, "importance_sampling", never)
    with pytest.raises(
        VaelabError,
        match="^annealed importance sampling does not apply to GaussianWeights: it has no prior, decode$",
    ):
        evaluate(GaussianWeights(1.0, 2.0), blank_split(3), ais=5)
    with pytest.raises(ConfigError, match="^quality needs a run folder or checkpoint"):
        evaluate(GaussianWeights(1.0, 2.0), blank_split(3), quality=5)


class LargestWeight:
    """A per-image reduction of the IS pass: the largest log-weight seen."""

    def __init__(self, num_samples: int, batch: int, device: torch.device) -> None:
        self.top = torch.full((batch,), -math.inf, dtype=torch.float64, device=device)

    def add(self, log_w: torch.Tensor) -> None:
        self.top = torch.maximum(self.top, log_w.max(0).values)

    def value(self) -> torch.Tensor:
        return self.top


@pytest.fixture
def largest_weight():
    """A new estimator in one registration (removed again after the test)."""

    @register_estimator(
        "largest_weight",
        applies=lambda caps, settings: caps.importance,
        needs=("importance",),
        weights=LargestWeight,
        description="the largest importance weight of each image",
    )
    def run(ctx):
        top = ctx.estimates["importance"].result.reduced["largest_weight"]
        return Estimate(
            "largest_weight", "max_k log w_k", n=len(top), extras={"max": float(top.max())}, per_datum=top
        )

    yield
    del ESTIMATORS["largest_weight"]


def test_a_new_estimator_is_one_registration(largest_weight):
    """A proposal wider than the target bounds the weights: w = p(z)/q(z) <= s_q/s_p, reached at z = 0; the
    largest of 4000 draws comes within 1e-3 of it (and an estimator of the same name is refused)."""
    r = evaluate(GaussianWeights(2.0, 1.0), blank_split(5), importance=4000, seed=0)
    block = r["largest_weight"]
    assert list(block) == ["method", "max", "num_images", "per_datum"] and block["num_images"] == 5
    bound = math.log(2.0)
    assert all(bound - 1e-3 < v <= bound + 1e-12 for v in block["per_datum"]) and block["max"] == max(
        block["per_datum"]
    )
    assert list(r)[-3:] == ["largest_weight", "seconds", "versions"]  # after the package's own
    with pytest.raises(ConfigError, match="estimator 'largest_weight' is already registered"):
        register_estimator("largest_weight", applies=lambda caps, settings: False)(lambda ctx: None)
