"""M1+M2 (StackedM2) against closed forms on a linear-Gaussian version: M1 a linearised VAE with a 1-d code z1
and a Gaussian decoder of fixed sigma, M2 on z1 linearised with a fixed-sigma Gaussian p(z1|y,z2). Then
log p(x) is a mixture over y of Gaussians, and L(x, y), U(x) are expectations over q(z1|x) (1-d: Gauss-Hermite
quadrature, exact for the quadratic parts) of M2's closed forms plus M1's log p(x|z1) - log q(z1|x)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from test_linear_gaussian_closed_forms import (
    CFG,
    SHAPE,
    SIGMA,
    affine,
    data,
    gaussian_elbo,
    linearised,
    mc_mean,
)
from torch.distributions import MultivariateNormal

from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.models.m2 import M2
from vaelab.models.stacked import StackedM2
from vaelab.models.vae import VAE
from vaelab.objectives.semisupervised import m2_objective

CLASSES, D2 = 3, 2
F64 = {"dtype": torch.float64}


def stacked() -> StackedM2:
    """A linearised M1 (z1 of 1 dim) under a linearised M2 with a fixed-sigma Gaussian p(z1|y,z2)."""
    torch.manual_seed(0)
    m1 = linearised(VAE(dataclasses.replace(CFG, latent_dim=1), SHAPE))
    with torch.no_grad():  # a wide q(z1|x): importance weights of light tail (any q keeps the closed forms)
        m1.head.bias[1] += 2.0
    head_cfg = ModelConfig(**{**CFG.__dict__, "latent_dim": D2, "extra": {"classes": CLASSES, "alpha": 0.5}})
    m = StackedM2(head_cfg, SHAPE, features=m1)
    m.head = linearised(M2(head_cfg, (1, 1, 1)))
    return m.double().eval()


def closed_forms(m: StackedM2, x: torch.Tensor, nodes: int = 60):
    """(L(x, y) [B, C], U(x) [B], log p(x) [B], log q(y|z1) at the code mean [B, C]) by quadrature over z1."""
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    t, w = torch.tensor(t, **F64), torch.tensor(w / math.sqrt(2 * math.pi), **F64)
    flat, b = x.flatten(1), len(x)
    q1 = m.features.encode(x).base_dist
    mu1, s1 = q1.loc[:, 0], q1.scale[:, 0]
    a_w, a_b = affine_1d(lambda z: m.features.decode(z).mean.flatten(1))
    big_l, u = torch.zeros(b, CLASSES, **F64), torch.zeros(b, **F64)
    for i in range(b):
        z1 = (mu1[i] + s1[i] * t)[:, None]  # the nodes [N, 1]
        codes = z1.reshape(-1, 1, 1, 1)
        m1 = MultivariateNormal(z1 @ a_w.T + a_b, SIGMA**2 * torch.eye(flat.shape[1], **F64)).log_prob(
            flat[i]
        ) - torch.distributions.Normal(mu1[i], s1[i]).log_prob(
            z1[:, 0]
        )  # log p(x|z1) - log q(z1|x) at each node
        log_q = torch.log_softmax(m.head.classifier(codes), -1)  # [N, C]
        per_class = torch.empty(len(t), CLASSES, **F64)
        for c in range(CLASSES):
            y = torch.full((len(t),), c)
            q2 = m.head.encode(codes, y).base_dist
            w2, b2 = affine(lambda z, c=c: m.head.decode(z, torch.full((len(z),), c)).mean.flatten(1))
            zero, one = torch.zeros(D2, **F64), torch.ones(D2, **F64)
            per_class[:, c] = gaussian_elbo(z1, w2, b2, q2.loc, q2.scale, zero, one) - math.log(CLASSES)
        big_l[i] = w @ (per_class + m1[:, None])
        u[i] = w @ ((log_q.exp() * (per_class - log_q)).sum(-1) + m1)
    # log p(x): p(z1|y) = N(b_y, W_y W_y^T + sigma^2), x = A z1 + a + noise
    log_px = []
    for c in range(CLASSES):
        w2, b2 = affine(lambda z, c=c: m.head.decode(z, torch.full((len(z),), c)).mean.flatten(1))
        var1 = w2 @ w2.T + SIGMA**2  # [1, 1]
        cov = a_w @ var1 @ a_w.T + SIGMA**2 * torch.eye(flat.shape[1], **F64)
        log_px.append(MultivariateNormal(a_w @ b2 + a_b, cov).log_prob(flat) - math.log(CLASSES))
    return big_l, u, torch.logsumexp(torch.stack(log_px, -1), -1)


def affine_1d(mean_of) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [N, 1], a [N]) of z1 -> mean_of(z1) for a 1-d z1."""
    a = mean_of(torch.zeros(1, 1, **F64))[0]
    return (mean_of(torch.ones(1, 1, **F64))[0] - a)[:, None], a


def test_stacked_bounds_and_evidence_are_their_closed_forms():
    m, x = stacked(), data(4)
    with torch.no_grad():
        big_l, u, log_px = closed_forms(m, x)
        assert torch.all(u < log_px) and torch.all(torch.logsumexp(big_l, -1) < log_px)
        cfg = ObjectiveConfig(kl="mc", num_samples=1500)
        mean, se = mc_mean(lambda g: m2_objective(m, x, cfg, 1.0, g).stats["elbo"])
        assert torch.all((mean - u).abs() < 4 * se + 1e-9), (mean, u, se)
        y = torch.tensor([2, 0, 1, 1])
        m.train()
        loss, se_loss = mc_mean(lambda g: m2_objective(m, x, cfg, 1.0, g, y=y).loss)
        m.eval()
        # the labelled loss: -mean L(x, y) + alpha * mean -log q(y|z1), q(y|z1) averaged over q(z1|x)
        t, w = np.polynomial.hermite_e.hermegauss(60)
        q1 = m.features.encode(x).base_dist
        ce = torch.stack(
            [
                torch.tensor(w / math.sqrt(2 * math.pi), **F64)
                @ -torch.log_softmax(
                    m.head.classifier(
                        (q1.loc[i, 0] + q1.scale[i, 0] * torch.tensor(t, **F64)).reshape(-1, 1, 1, 1)
                    ),
                    -1,
                )[:, y[i]]
                for i in range(4)
            ]
        )
        expected = -big_l[torch.arange(4), y].mean() + 0.5 * ce.mean()
        assert abs(loss - expected) < 4 * se_loss + 1e-9, (loss, expected, se_loss)
        log_w = m.log_importance_weights(x, 30_000, torch.Generator().manual_seed(4))
    ratio = (log_w - log_px).exp()  # mean_k w_k / p(x) -> 1: unbiased, within 4 standard errors
    se = ratio.std(0) / math.sqrt(len(ratio))
    assert torch.all((ratio.mean(0) - 1).abs() < 4 * se) and torch.all(se < 0.1), (ratio.mean(0), se)


def test_stacked_unlabelled_bound_sums_the_classes_by_hand():
    """U(x) per draw = sum_y q(y|z1)(log p(x|z1) + log p(z1|y,z2_y) + log p(y) + log p(z2_y) - log q(z2_y|z1,y)
    - log q(z1|x) - log q(y|z1)), each class with its own z2 and one z1 shared by the classes."""
    m, x = stacked(), data(3)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        step = m2_objective(m, x, ObjectiveConfig(kl="mc"), 1.0, g)
        g = torch.Generator().manual_seed(5)
        q1 = m.features.encode(x)
        z1 = q1.mean + q1.stddev * torch.randn(1, 3, 1, generator=g, **F64)
        eps = torch.randn(1, 3, CLASSES, D2, generator=g, **F64)
        codes = z1.reshape(3, 1, 1, 1)
        log_q = torch.log_softmax(m.head.classifier(codes), -1)
        m1 = m.features.decode(z1).log_prob(x) - q1.log_prob(z1)  # [1, 3]
        u = torch.zeros(3, **F64)
        for c in range(CLASSES):
            y = torch.full((3,), c)
            q2 = m.head.encode(codes, y)
            z2 = q2.mean + q2.stddev * eps[0, :, c]
            term = m.head.decode(z2, y).log_prob(codes) + m.head.prior().log_prob(z2) - q2.log_prob(z2)
            u += log_q[:, c].exp() * (m1[0] + term - math.log(CLASSES) - log_q[:, c])
    torch.testing.assert_close(step.stats["elbo"], u)
