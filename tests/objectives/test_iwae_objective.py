"""The IWAE objective and DReG on probabilistic PCA, where log p(x) and p(z|x) are exact."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.models.hierarchical import HierarchicalVAE
from vaelab.models.linear import LinearGaussianVAE
from vaelab.objectives.elbo import elbo_objective, latent_terms
from vaelab.objectives.iwae import iwae_objective


def ppca(latent: int = 2, seed: int = 0) -> LinearGaussianVAE:
    """pPCA over 6 pixels with a deliberately imperfect linear encoder."""
    torch.manual_seed(seed)
    m = LinearGaussianVAE(ModelConfig(latent_dim=latent, gaussian_sigma=0.5), (1, 2, 3)).double()
    with torch.no_grad():
        m.decoder.weight.normal_(0, 1.0)
        m.decoder.bias.normal_(0, 0.3)
        m.encoder.weight.normal_(0, 0.3)
    return m


def make_exact(m: LinearGaussianVAE, shift: float = 0.0, inflate: float = 1.0) -> None:
    """q(z|x) := N(E[z|x] + shift * sd, (inflate * sd)^2) per dimension, sd^2 the posterior's marginal variances:
    with a 1-D latent and no shift or inflation, q(z|x) = p(z|x) exactly (a linear mean, a constant variance)."""
    w, b = m.decoder.weight, m.decoder.bias
    s2 = m.log_sigma.exp() ** 2
    d = m.latent_dim
    cov = torch.linalg.inv(torch.eye(d, dtype=w.dtype) + w.T @ w / s2)
    a = cov @ w.T / s2
    sd = cov.diagonal().sqrt()
    with torch.no_grad():
        m.encoder.weight.zero_()
        m.encoder.weight[:d] = a
        m.encoder.bias[:d] = -(a @ b) + shift * sd
        m.encoder.bias[d:] = torch.log(inflate * sd)


def data(n: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, 2, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_iwae_value_is_the_direct_computation():
    """-loss and the reported bound equal log (1/K) sum_k p(x, z_k) / q(z_k|x) computed by hand, same eps."""
    m, x, k = ppca(), data(), 7
    step = iwae_objective(m, x, ObjectiveConfig(num_samples=k), 1.0, torch.Generator().manual_seed(3))
    eps = torch.randn(k, len(x), 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    loc, log_scale = m.encoder(x.flatten(1)).chunk(2, -1)
    z = loc + log_scale.exp() * eps
    mean = z @ m.decoder.weight.T + m.decoder.bias
    log_px_z = Normal(mean, m.log_sigma.exp()).log_prob(x.flatten(1)).sum(-1)
    log_w = log_px_z + Normal(0.0, 1.0).log_prob(z).sum(-1) - Normal(loc, log_scale.exp()).log_prob(z).sum(-1)
    bound = torch.logsumexp(log_w, 0) - math.log(k)
    torch.testing.assert_close(step.stats["iwae"], bound)
    torch.testing.assert_close(step.stats["elbo"], log_w.mean(0))
    torch.testing.assert_close(step.loss, -bound.mean())


@pytest.mark.parametrize("dreg", [False, True])
def test_every_bound_is_log_px_when_q_is_the_posterior(dreg):
    m = ppca(latent=1)
    make_exact(m)
    x = data()
    exact = m.exact_log_px(x)
    for k in (1, 5):
        cfg = ObjectiveConfig(num_samples=k, dreg=dreg, kl="mc")
        step = iwae_objective(m, x, cfg, 1.0, torch.Generator().manual_seed(k))
        torch.testing.assert_close(step.stats["iwae"], exact)
        torch.testing.assert_close(step.stats["elbo"], exact)
        torch.testing.assert_close(step.loss, -exact.mean())
    elbo = elbo_objective(
        m, x, ObjectiveConfig(kl="mc", num_samples=3), 1.0, torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(elbo.stats["elbo"], exact)


def _grads(model, x, cfg, seed):
    model.zero_grad()
    step = iwae_objective(model, x, cfg, 1.0, torch.Generator().manual_seed(seed))
    step.loss.backward()
    enc = torch.cat([p.grad.flatten() for p in model.encoder.parameters()])
    dec = torch.cat(
        [model.decoder.weight.grad.flatten(), model.decoder.bias.grad, model.log_sigma.grad[None]]
    )
    return step.loss.detach(), enc, dec


def test_dreg_keeps_the_value_and_the_decoder_gradient():
    m, x = ppca(), data()
    plain = _grads(m, x, ObjectiveConfig(num_samples=10), 5)
    dreg = _grads(m, x, ObjectiveConfig(num_samples=10, dreg=True), 5)
    assert torch.equal(plain[0], dreg[0])
    torch.testing.assert_close(plain[2], dreg[2], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(plain[1], dreg[1])


def per_copy_encoder_grads(model, x, cfg, copies):
    """Encoder gradients of `copies` independent draws of the objective on x, from one pass over x repeated:
    the encoder is linear, so a datum's gradient is (d loss / d encoder output) outer (x, 1)."""
    seen = {}

    def keep(module, inputs, out):
        out.retain_grad()
        seen["out"] = out

    hook = model.encoder.register_forward_hook(keep)
    xs = x.repeat(copies, 1, 1, 1)
    iwae_objective(model, xs, cfg, 1.0, torch.Generator().manual_seed(7)).loss.backward()
    hook.remove()
    g = seen["out"].grad * len(xs) / len(x)  # the gradient of each copy's own mean over x
    flat = torch.cat([(g[:, :, None] * xs.flatten(1)[:, None, :]).flatten(1), g], 1)
    return flat.view(copies, len(x), -1).sum(1)


def test_dreg_encoder_gradient_is_unbiased_with_lower_variance():
    """Over 2000 independent draws, with q near the posterior (as training leaves it): the same mean encoder
    gradient (paired differences within 4 s.e.), and a total variance lower by more than the sampling error
    of both variances (s.e. of a variance ~ var * sqrt(2 / (n - 1)))."""
    m, x, n = ppca(), data(), 2000
    make_exact(m, shift=0.3, inflate=1.2)
    plain = per_copy_encoder_grads(m, x, ObjectiveConfig(num_samples=10), n)
    dreg = per_copy_encoder_grads(m, x, ObjectiveConfig(num_samples=10, dreg=True), n)
    diff = dreg - plain
    assert torch.all(diff.mean(0).abs() <= 4 * diff.std(0) / math.sqrt(n) + 1e-12)
    v_plain, v_dreg = plain.var(0).sum(), dreg.var(0).sum()
    rel = 4 * math.sqrt(2 / (n - 1))
    assert v_dreg * (1 + rel) < v_plain * (1 - rel), (float(v_dreg), float(v_plain))
    one = per_copy_encoder_grads(m, x, ObjectiveConfig(num_samples=10, dreg=True), 1)[0]
    # the per-copy formula is right: one copy with the same seed is the ordinary gradient
    _, direct, _ = _grads(m, x, ObjectiveConfig(num_samples=10, dreg=True), 7)
    torch.testing.assert_close(one, direct)


def test_dreg_encoder_gradient_vanishes_at_the_exact_posterior():
    """With q = p(z|x) every log w_k = log p(x): DReG's encoder gradient is exactly 0, IWAE's is noise."""
    m = ppca(latent=1)
    make_exact(m)
    x = data()
    _, enc_dreg, _ = _grads(m, x, ObjectiveConfig(num_samples=5, dreg=True), 0)
    _, enc_plain, _ = _grads(m, x, ObjectiveConfig(num_samples=5), 0)
    assert enc_dreg.abs().max() < 1e-9
    assert enc_plain.abs().max() > 1e-3


def test_dreg_scales_each_path_once_in_the_hierarchical_model():
    """The hooks give exactly grad_phi sum_k wt_k^2 log w_k (q's parameters stopped) for the inference networks
    and grad_theta sum_k wt_k log w_k for the generative ones, through both stochastic layers."""
    torch.manual_seed(0)
    cfg = ModelConfig(hidden=(12,), latent_dim=3, activation="tanh", extra={"h1_dim": 4, "h2_hidden": [5]})
    m = HierarchicalVAE(cfg, (1, 3, 3)).double()
    x = (torch.rand(6, 1, 3, 3, generator=torch.Generator().manual_seed(1)) > 0.5).double()
    enc = [*m.q1.parameters(), *m.q2.parameters()]
    gen = [*m.p1.parameters(), *m.decoder.parameters()]
    m.zero_grad()
    iwae_objective(
        m, x, ObjectiveConfig(num_samples=4, dreg=True), 1.0, torch.Generator().manual_seed(2)
    ).loss.backward()
    got_enc, got_gen = [p.grad.clone() for p in enc], [p.grad.clone() for p in gen]
    t = latent_terms(m, x, 4, torch.Generator().manual_seed(2), stop_q=True)
    log_w = t.rec - t.kl
    wt = torch.softmax(log_w.detach(), 0)
    want_enc = torch.autograd.grad(-(wt**2 * log_w).sum(0).mean(), enc, retain_graph=True)
    want_gen = torch.autograd.grad(-(wt * log_w).sum(0).mean(), gen)
    for a, b in zip(got_enc + got_gen, list(want_enc) + list(want_gen)):
        torch.testing.assert_close(a, b)
