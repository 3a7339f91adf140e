"""The variants' bounds against closed forms on linear-Gaussian cases. With the activations taken out and a
Gaussian decoder of fixed variance, p(x|z) is affine-Gaussian in z, so for any Gaussian q the ELBO, and with a
Gaussian prior the evidence log p(x), are closed forms: the VampPrior (one pseudo-input for the ELBO, three for
log p(x)), the CVAE given its label, M2's L(x, y), U(x) and log p(x) with the label marginalised, and the
two-layer hierarchical VAE."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal

from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.models.cvae import CVAE
from vaelab.models.hierarchical import HierarchicalVAE, gaussian
from vaelab.models.m2 import M2
from vaelab.models.vampprior import VampPriorVAE
from vaelab.nets.mlp import ACTIVATIONS
from vaelab.objectives.elbo import OBJECTIVES
from vaelab.objectives.semisupervised import m2_objective

SHAPE, SIGMA, D = (1, 3, 3), 0.6, 2
CFG = ModelConfig(
    hidden=(5,),
    latent_dim=D,
    activation="tanh",
    likelihood="gaussian",
    gaussian_variance="fixed",
    gaussian_sigma=SIGMA,
    variance_floor=0.0,
)


def linearised(model: nn.Module) -> nn.Module:
    """The model with every activation replaced by the identity (so its decoder is affine), in float64."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, tuple(ACTIVATIONS.values())):
                setattr(parent, name, nn.Identity())
    return model.double().eval()


def affine(mean_of) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [N, D], b [N]) of an affine map z -> mean_of(z) [.., N], read off at 0 and the unit vectors."""
    b = mean_of(torch.zeros(1, D, dtype=torch.float64))[0]
    w = mean_of(torch.eye(D, dtype=torch.float64)) - b
    return w.T, b


def expected_log_lik(x, w, b, mu, s) -> torch.Tensor:
    """E_q[log N(x; Wz + b, SIGMA^2 I)] for q = N(mu, diag(s^2)), per datum [B]."""
    resid = x - mu @ w.T - b
    spread = (s**2) @ (w**2).sum(0)  # tr(W diag(s^2) W^T)
    return -0.5 * x.shape[-1] * math.log(2 * math.pi * SIGMA**2) - ((resid**2).sum(-1) + spread) / (
        2 * SIGMA**2
    )


def gaussian_elbo(x, w, b, mu, s, prior_mu, prior_s) -> torch.Tensor:
    """E_q[log N(x; Wz + b, SIGMA^2 I)] - KL(N(mu, s^2) || N(prior_mu, prior_s^2)), per datum [B]."""
    kl = (torch.log(prior_s / s) + (s**2 + (mu - prior_mu) ** 2) / (2 * prior_s**2) - 0.5).sum(-1)
    return expected_log_lik(x, w, b, mu, s) - kl


def evidence(x, w, b, prior_mu, prior_s) -> torch.Tensor:
    """log N(x; W prior_mu + b, W diag(prior_s^2) W^T + SIGMA^2 I) [B]."""
    cov = w @ torch.diag(prior_s**2) @ w.T + SIGMA**2 * torch.eye(len(b), dtype=torch.float64)
    return MultivariateNormal(w @ prior_mu + b, cov).log_prob(x)


def mc_mean(estimate, reps: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error over `reps` independent Monte Carlo estimates (each with its own seed)."""
    values = torch.stack([estimate(torch.Generator().manual_seed(r)) for r in range(reps)])
    return values.mean(0), values.std(0) / math.sqrt(reps)


def assert_importance_sampling_is_exact(log_w: torch.Tensor, log_px: torch.Tensor) -> None:
    """mean_k w_k is unbiased for p(x): within 4 standard errors of the closed form, per datum."""
    ratio = (log_w - log_px).exp()  # w_k / p(x), [K, B]
    se = ratio.std(0) / math.sqrt(ratio.shape[0])
    assert torch.all((ratio.mean(0) - 1).abs() < 4 * se), (ratio.mean(0), se)
    assert torch.all(se < 0.05)  # enough draws for the check to bite


def with_extra(**extra) -> ModelConfig:
    """CFG with `model.extra` set (pseudo-inputs, classes, alpha)."""
    return ModelConfig(**{**CFG.__dict__, "extra": extra})


def data(n: int) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def test_vampprior_elbo_and_evidence_are_their_closed_forms():
    torch.manual_seed(0)
    one = linearised(VampPriorVAE(with_extra(pseudo_inputs=1), SHAPE))
    x = data(5)
    w, b = affine(lambda z: one.decode(z).mean.flatten(1))
    with torch.no_grad():
        prior = one.prior()
        q = one.encode(x).base_dist
        exact = gaussian_elbo(x.flatten(1), w, b, q.loc, q.scale, prior.locs[0], prior.scales[0])
        cfg = ObjectiveConfig(kl="mc", num_samples=4000)
        mean, se = mc_mean(lambda g: OBJECTIVES["elbo"](one, x, cfg, 1.0, g).stats["elbo"])
    assert torch.all((mean - exact).abs() < 4 * se + 1e-9), (mean, exact, se)

    torch.manual_seed(1)
    three = linearised(VampPriorVAE(with_extra(pseudo_inputs=3), SHAPE))
    w, b = affine(lambda z: three.decode(z).mean.flatten(1))
    with torch.no_grad():
        p = three.prior()
        per_component = [evidence(x.flatten(1), w, b, p.locs[k], p.scales[k]) for k in range(3)]
        log_px = torch.logsumexp(torch.stack(per_component), 0) - math.log(3)
        log_w = three.log_importance_weights(x, 200_000, torch.Generator().manual_seed(2))
    assert torch.all(log_w.mean(0) < log_px)  # ELBO < log p(x)
    assert_importance_sampling_is_exact(log_w, log_px)


def test_cvae_elbo_and_evidence_given_the_label_are_their_closed_forms():
    torch.manual_seed(0)
    m = linearised(CVAE(with_extra(classes=3), SHAPE))
    x, y = data(6), torch.tensor([0, 1, 2, 2, 1, 0])
    zero, ones = torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64)
    with torch.no_grad():
        q = m.encode(x, y).base_dist
        exact, log_px = [], []
        for i in range(6):
            w, b = affine(lambda z, i=i: m.decode(z, y[i].expand(len(z))).mean.flatten(1))
            exact.append(gaussian_elbo(x[i].flatten(), w, b, q.loc[i], q.scale[i], zero, ones))
            log_px.append(evidence(x[i].flatten(), w, b, zero, ones))
        exact, log_px = torch.stack(exact), torch.stack(log_px)
        for kl in ("analytic", "mc"):
            cfg = ObjectiveConfig(kl=kl, num_samples=4000)
            mean, se = mc_mean(lambda g, cfg=cfg: OBJECTIVES["elbo"](m, x, cfg, 1.0, g, y=y).stats["elbo"])
            assert torch.all((mean - exact).abs() < 4 * se + 1e-9), (kl, mean, exact, se)
        log_w = m.log_importance_weights(x, 200_000, torch.Generator().manual_seed(3), y=y)
    assert torch.all(exact < log_px)
    assert_importance_sampling_is_exact(log_w, log_px)


@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_m2_bounds_are_their_closed_forms(kl):
    torch.manual_seed(0)
    m = linearised(M2(with_extra(classes=3, alpha=0.5), SHAPE))
    x = data(4)
    flat = x.flatten(1)
    zero, ones = torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64)
    with torch.no_grad():
        log_q = torch.log_softmax(m.classifier(x), -1)  # [B, C]
        big_l, log_pxy = torch.empty(4, 3, dtype=torch.float64), torch.empty(4, 3, dtype=torch.float64)
        for c in range(3):
            q = m.encode(x, torch.full((4,), c)).base_dist
            w, b = affine(lambda z, c=c: m.decode(z, torch.full((len(z),), c)).mean.flatten(1))
            big_l[:, c] = gaussian_elbo(flat, w, b, q.loc, q.scale, zero, ones) - math.log(3)  # L(x, y)
            log_pxy[:, c] = evidence(flat, w, b, zero, ones) - math.log(3)
        u = (log_q.exp() * (big_l - log_q)).sum(-1)  # U(x) = sum_y q(y|x) (L(x, y) - log q(y|x))
        log_px = torch.logsumexp(log_pxy, -1)
        cfg = ObjectiveConfig(kl=kl, num_samples=4000)
        mean, se = mc_mean(lambda g: m2_objective(m, x, cfg, 1.0, g).stats["elbo"])
        assert torch.all((mean - u).abs() < 4 * se + 1e-9), (mean, u, se)
        # with every label known, the training loss is -mean L(x, y) + alpha * mean(-log q(y|x)), alpha = 0.5
        y = torch.tensor([2, 0, 1, 1])
        m.train()
        loss, se_loss = mc_mean(lambda g: m2_objective(m, x, cfg, 1.0, g, y=y).loss)
        m.eval()
        expected = -big_l[torch.arange(4), y].mean() + 0.5 * -log_q[torch.arange(4), y].mean()
        assert abs(loss - expected) < 4 * se_loss + 1e-9, (loss, expected, se_loss)
        log_w = m.log_importance_weights(x, 100_000, torch.Generator().manual_seed(4))
    assert torch.all(u < log_px)
    assert_importance_sampling_is_exact(log_w, log_px)


def hierarchical_closed_forms(m: HierarchicalVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ELBO, log p(x)) per datum of a linearised hierarchical VAE whose q(h2|h1) and p(h1|h2) have constant
    scales: q(h1, h2 | x) and p(h1, h2, x) are then joint Gaussians, read off the networks."""
    f64, h1_dim = {"dtype": torch.float64}, m.h1_dim
    flat = x.flatten(1)

    def loc_scale(net, inputs):
        d = gaussian(net(inputs)).base_dist
        return d.loc, d.scale

    mu1, s1 = loc_scale(m.q1, x)  # q(h1|x) = N(mu1, diag(s1^2)) per datum
    c, s2 = (v[0] for v in loc_scale(m.q2, torch.zeros(1, h1_dim, **f64)))
    bmat = (loc_scale(m.q2, torch.eye(h1_dim, **f64))[0] - c).T  # q(h2|h1) = N(B h1 + c, diag(s2^2))
    a, t = (v[0] for v in loc_scale(m.p1, torch.zeros(1, D, **f64)))
    amat = (loc_scale(m.p1, torch.eye(D, **f64))[0] - a).T  # p(h1|h2) = N(A h2 + a, diag(t^2))
    b = m.decoder(torch.zeros(1, h1_dim, **f64)).flatten(1)[0]
    w = (m.decoder(torch.eye(h1_dim, **f64)).flatten(1) - b).T  # p(x|h1) = N(W h1 + b, SIGMA^2 I)
    lin = torch.eye(h1_dim, **f64) - amat @ bmat  # h1 - A h2 - a = lin h1 - A c - a - A s2 eps2
    elbo = []
    for i in range(len(x)):
        s1c = torch.diag(s1[i] ** 2)
        rec = expected_log_lik(flat[i], w, b, mu1[i], s1[i])
        m2, c2 = (
            bmat @ mu1[i] + c,
            bmat @ s1c @ bmat.T + torch.diag(s2**2),
        )  # h2's mean and covariance under q
        log_p2 = -0.5 * D * math.log(2 * math.pi) - 0.5 * (m2 @ m2 + torch.trace(c2))
        r_mean = lin @ mu1[i] - amat @ c - a
        r_cov = lin @ s1c @ lin.T + amat @ torch.diag(s2**2) @ amat.T
        log_p1 = -0.5 * torch.log(2 * math.pi * t**2).sum() - 0.5 * (
            r_mean @ (r_mean / t**2) + torch.trace(r_cov / t**2)
        )
        entropy = 0.5 * torch.log(2 * math.pi * math.e * torch.cat([s1[i], s2]) ** 2).sum()
        elbo.append(rec + log_p2 + log_p1 + entropy)
    cov = w @ (amat @ amat.T + torch.diag(t**2)) @ w.T + SIGMA**2 * torch.eye(len(b), **f64)
    return torch.stack(elbo), MultivariateNormal(w @ a + b, cov).log_prob(flat)


def test_hierarchical_elbo_and_evidence_are_their_closed_forms():
    torch.manual_seed(0)
    cfg = ModelConfig(**{**CFG.__dict__, "extra": {"h1_dim": 3, "h2_hidden": [4]}})
    m = linearised(HierarchicalVAE(cfg, SHAPE))
    x = data(5)
    with torch.no_grad():
        m.q2[-1].weight[D:] = 0.0  # q(h2|h1): constant scale
        m.p1[-1].weight[3:] = 0.0  # p(h1|h2): constant scale
        exact, log_px = hierarchical_closed_forms(m, x)
        objective = ObjectiveConfig(kl="mc", num_samples=4000)
        mean, se = mc_mean(lambda g: OBJECTIVES["elbo"](m, x, objective, 1.0, g).stats["elbo"])
        assert torch.all((mean - exact).abs() < 4 * se + 1e-9), (mean, exact, se)
        assert torch.all(exact < log_px)
        # proposals wider than the posterior (scales softplus(2) = 2.1) bound the weights, so that IS's
        # standard error is trustworthy
        m.q1[-1].bias[3:] = m.q2[-1].bias[D:] = 2.0
        _, log_px_again = hierarchical_closed_forms(m, x)
        log_w = m.log_importance_weights(x, 200_000, torch.Generator().manual_seed(5))
    torch.testing.assert_close(log_px_again, log_px)  # the evidence does not depend on q
    assert_importance_sampling_is_exact(log_w, log_px)
