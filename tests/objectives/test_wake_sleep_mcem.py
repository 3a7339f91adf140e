"""Wake-sleep, reweighted wake-sleep and Monte Carlo EM against closed forms on the linear-Gaussian model
(probabilistic PCA with a linear encoder), where p(z|x), log p(x) and every gradient are known exactly."""

from __future__ import annotations

import math

import pytest
import torch

from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.distributions.gaussian import draw_z
from vaelab.models.linear import LinearGaussianVAE
from vaelab.objectives import OBJECTIVES
from vaelab.objectives.iwae import iwae_objective
from vaelab.objectives.mcem import mcem_step, posterior_draws
from vaelab.objectives.wake_sleep import dreams, sleep_term

SHAPE, D, SIGMA = (1, 2, 2), 2, 0.5
N = 4


def linear_model(seed: int = 0) -> LinearGaussianVAE:
    """A float64 linear-Gaussian model whose W is far from orthogonal (so p(z|x) is correlated)."""
    torch.manual_seed(seed)
    m = LinearGaussianVAE(ModelConfig(latent_dim=D, gaussian_sigma=SIGMA), SHAPE).double()
    with torch.no_grad():
        m.decoder.weight.copy_(torch.tensor([[1.0, 0.8], [0.6, 1.2], [-0.4, 0.9], [0.7, 0.3]]))
        m.decoder.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    return m


def batch(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def grads(model, loss) -> dict[str, torch.Tensor]:
    """d loss / d each parameter (zeros where the loss does not reach it)."""
    names, params = zip(*model.named_parameters())
    gs = torch.autograd.grad(loss, params, allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g for n, p, g in zip(names, params, gs)}


def decoder_grad_closed_form(model, x, z):
    """d/dW and d/db of log N(x; W z + b, sigma^2 I) per draw: (r z^T / s2, r / s2), r = x - W z - b;
    z [K, B, D] -> [K, B, N, D] and [K, B, N]."""
    w, b, s2 = model.decoder.weight, model.decoder.bias, model.log_sigma.exp() ** 2
    r = (x.flatten(1) - z @ w.T - b).detach() / s2.detach()
    return r[..., :, None] * z[..., None, :], r


def encoder_grad_closed_form(model, xs, zs):
    """d/dA of log q(zs | xs) for q = N(A xs + c) with log-scale rows: the mean rows (zs - mu) / s^2 xs^T, the
    log-scale rows ((zs - mu)^2 / s^2 - 1) xs^T, summed over the dreams."""
    loc, log_scale = model.encoder(xs.flatten(1)).detach().chunk(2, -1)
    s2 = (2 * log_scale).exp()
    d_loc = (zs - loc) / s2
    d_log_scale = (zs - loc) ** 2 / s2 - 1
    return torch.cat([d_loc, d_log_scale], -1).T @ xs.flatten(1)


def test_wake_sleep_gradient_is_the_two_phases_closed_forms():
    model, x, k = linear_model(), batch(), 3
    cfg = ObjectiveConfig(num_samples=k)
    got = grads(model, OBJECTIVES["wake-sleep"](model, x, cfg, 1.0, torch.Generator().manual_seed(5)).loss)
    g = torch.Generator().manual_seed(5)  # the same stream: the same K draws of q, then the same dreams
    z = draw_z(model.encode(x), k, g).detach()
    zs, xs = dreams(model, len(x), g)
    d_w, d_b = decoder_grad_closed_form(model, x, z)
    # wake: -mean over B and K of log p(x, z): the decoder's closed form; nothing to the encoder from it
    assert torch.allclose(got["decoder.weight"], -d_w.mean((0, 1)), atol=1e-12)
    assert torch.allclose(got["decoder.bias"], -d_b.mean((0, 1)), atol=1e-12)
    # sleep: -mean over the dreams of log q(zs | xs): the encoder's closed form, nothing to the decoder
    assert torch.allclose(
        got["encoder.weight"], -encoder_grad_closed_form(model, xs, zs) / len(x), atol=1e-12
    )
    wake_only = grads(model, -(model.decode(z).log_prob(x) + model.prior().log_prob(z)).mean())
    sleep_only = grads(model, -model.encode(xs).log_prob(zs).mean())
    for name in got:
        assert torch.allclose(got[name], wake_only[name] + sleep_only[name], atol=1e-12), name
        if name.startswith("encoder"):
            assert torch.count_nonzero(wake_only[name]) == 0, name
        else:
            assert torch.count_nonzero(sleep_only[name]) == 0, name


def test_the_dreams_are_draws_of_the_model():
    """(z, x) ~ p(z) p(x|z) = N((0, b), [[I, W^T], [W, W W^T + sigma^2 I]]): the joint's sample mean and
    covariance over n dreams, entry by entry within 5 standard errors (the z-x block checks x came from its z)."""
    model = linear_model()
    n = 20000
    z, x = dreams(model, n, torch.Generator().manual_seed(0))
    assert not z.requires_grad and not x.requires_grad
    assert z.shape == (n, D) and x.shape == (n, *SHAPE)
    w, b = model.decoder.weight.detach(), model.decoder.bias.detach()
    joint = torch.cat([z, x.flatten(1)], 1)
    mean = torch.cat([torch.zeros(D, dtype=b.dtype), b])
    cov = torch.cat(
        [
            torch.cat([torch.eye(D, dtype=w.dtype), w.T], 1),
            torch.cat([w, model.marginal().covariance_matrix.detach()], 1),
        ],
        0,
    )
    var = cov.diagonal()
    # Gaussian draws: se(mean_i) = sqrt(S_ii / n), se(S_ij) = sqrt((S_ii S_jj + S_ij^2) / n) (~0.007-0.02 here)
    assert (joint.mean(0) - mean).abs().le(5 * (var / n).sqrt()).all()
    se = ((var[:, None] * var[None, :] + cov**2) / n).sqrt()
    z_scores = (torch.cov(joint.T) - cov) / se
    assert z_scores.abs().le(5).all(), f"covariance off by {z_scores.abs().max():.1f} standard errors"


def test_reweighted_wake_sleep_theta_gradient_is_the_iwae_gradient_and_q_gets_wake_plus_sleep():
    model, x, k = linear_model(), batch(), 6
    cfg = ObjectiveConfig(num_samples=k)
    step = OBJECTIVES["reweighted-wake-sleep"](model, x, cfg, 1.0, torch.Generator().manual_seed(3))
    got = grads(model, step.loss)
    iwae = grads(model, iwae_objective(model, x, cfg, 1.0, torch.Generator().manual_seed(3)).loss)
    for name in ("decoder.weight", "decoder.bias", "log_sigma"):  # theta: d IWAE_K / d theta at fixed draws
        assert torch.allclose(got[name], iwae[name], atol=1e-12), name
    g = torch.Generator().manual_seed(3)
    q = model.encode(x)
    z = draw_z(q, k, g).detach()
    zs, xs = dreams(model, len(x), g)
    log_w = (model.decode(z).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)).detach()
    wt = torch.softmax(log_w, 0)
    wake_q = grads(model, -(wt * q.log_prob(z)).sum(0).mean())
    sleep_q = grads(model, -model.encode(xs).log_prob(zs).mean())
    for name in ("encoder.weight", "encoder.bias"):
        assert torch.allclose(got[name], 0.5 * (wake_q[name] + sleep_q[name]), atol=1e-12), name
    assert torch.allclose(step.stats["iwae"], torch.logsumexp(log_w, 0) - math.log(k), atol=1e-12)


def test_mcem_m_step_with_exact_posterior_draws_is_fishers_identity():
    """E_{p(z|x)}[d log p(x, z) / d theta] = d log p(x) / d theta: the M-step's gradient with exact posterior
    draws injected matches the gradient of the closed-form log p(x) within its Monte Carlo error."""
    model, x, k = linear_model(), batch(), 20000
    z = model.exact_posterior(x).sample((k,)).detach()
    step = mcem_step(model, x, z, ObjectiveConfig(), torch.Generator().manual_seed(0))
    got = grads(model, step.loss)
    d_w, d_b = decoder_grad_closed_form(model, x, z)
    # the autograd gradient is the closed form averaged over the draws, exactly
    assert torch.allclose(got["decoder.weight"], -d_w.mean((0, 1)), atol=1e-10)
    truth = grads(model, -model.exact_log_px(x).mean())
    for name, per_draw in (("decoder.weight", d_w), ("decoder.bias", d_b)):
        se = per_draw.mean(1).std(0) / math.sqrt(k)
        err = (got[name] - truth[name]).abs()
        assert (err < 5 * se + 1e-9).all(), (name, err.max(), se.max())
        assert err.max() > 0  # a Monte Carlo estimate, not the closed form itself


def test_hmc_draws_follow_the_exact_posterior():
    model, x = linear_model(), batch(2)
    z, accept = posterior_draws(model, x, 4000, torch.Generator().manual_seed(0), steps=30, warmup=10)
    exact = model.exact_posterior(x)
    mean, cov = exact.mean.detach(), exact.covariance_matrix.detach()
    se = cov.diagonal(dim1=-2, dim2=-1).sqrt() / math.sqrt(4000)
    assert ((z.mean(0) - mean).abs() < 6 * se).all(), (z.mean(0), mean)
    for b in range(len(x)):
        assert torch.allclose(torch.cov(z[:, b].T), cov[b], atol=0.02)
    assert (accept > 0.5).all()


def test_mcem_objective_with_hmc_draws_matches_fishers_identity_within_mc_error():
    model, x = linear_model(), batch(2)
    cfg = ObjectiveConfig(num_samples=4000)
    step = OBJECTIVES["mcem"](model, x, cfg, 1.0, torch.Generator().manual_seed(0))
    got = grads(model, step.loss)
    truth = grads(model, -model.exact_log_px(x).mean())
    z = model.exact_posterior(x).sample((4000,))
    d_w, _ = decoder_grad_closed_form(model, x, z)
    se = d_w.mean(1).std(0) / math.sqrt(4000)
    # a short chain (10 transitions from q's mean) is approximate: within a few standard errors of the truth
    assert ((got["decoder.weight"] - truth["decoder.weight"]).abs() < 8 * se).all()
    assert set(step.stats) == {"elbo", "rec", "kl", "sleep", "accept"}


def test_sleep_phase_minimises_the_forward_kl_to_the_exact_posterior():
    """With the decoder fixed, a few hundred sleep-phase steps (the objective's whole encoder gradient, as the
    first test shows) take q's mean to p(z|x)'s mean and its variances to p(z|x)'s marginal variances diag(S):
    the forward KL's moment matching, not the reverse KL's optimum 1 / diag(S^-1)."""
    model = linear_model()
    for p in (*model.decoder.parameters(), model.log_sigma):
        p.requires_grad_(False)
    with torch.no_grad():  # q(z|x) = N(0, I) for every x to start
        for p in model.encoder.parameters():
            p.zero_()
    opt = torch.optim.Adam(model.encoder.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    for i in range(250):
        if i in (150, 200):  # smaller steps at the end, to settle within the dreams' noise
            opt.param_groups[0]["lr"] = {150: 0.01, 200: 0.002}[i]
        opt.zero_grad()
        (-sleep_term(model, 512, g).mean()).backward()
        opt.step()
    test = batch(8, seed=9)
    exact, q = model.exact_posterior(test), model.encode(test)
    forward_opt = exact.covariance_matrix[0].diagonal()
    reverse_opt = 1 / torch.linalg.inv(exact.covariance_matrix[0]).diagonal()
    assert (forward_opt / reverse_opt > 1.3).all()  # the two optima are told apart
    assert torch.allclose(q.mean, exact.mean, atol=0.05), (q.mean, exact.mean)
    assert torch.allclose(q.variance, forward_opt.expand_as(q.variance), rtol=0.12), (q.variance, forward_opt)
    assert ((q.variance - forward_opt).abs() < 0.3 * (q.variance - reverse_opt).abs()).all()


@pytest.mark.parametrize("name", ["wake-sleep", "reweighted-wake-sleep", "mcem"])
def test_the_yardstick_is_the_elbo_of_q(name):
    """The reported elbo / rec / kl are the ELBO of q (analytic KL), the same numbers an elbo run reports."""
    model, x = linear_model(), batch(4)
    with torch.no_grad():
        step = OBJECTIVES[name](
            model, x, ObjectiveConfig(num_samples=1), 1.0, torch.Generator().manual_seed(0)
        )
        ref = OBJECTIVES["elbo"](model, x, ObjectiveConfig(), 1.0, torch.Generator().manual_seed(0))
    assert torch.allclose(step.stats["kl"], ref.stats["kl"], atol=1e-12)
    assert torch.allclose(step.stats["elbo"], step.stats["rec"] - step.stats["kl"], atol=1e-12)
    assert (step.stats["elbo"] < model.exact_log_px(x)).all()
