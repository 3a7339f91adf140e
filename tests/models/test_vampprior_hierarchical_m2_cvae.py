"""The VAE variants against direct computations: VampPrior's mixture, the hierarchical and M2 weights, the CVAE."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.distributions import priors
from vaelab.distributions.priors import DiagonalGaussianMixture
from vaelab.distributions.sampling import sample
from vaelab.errors import DataError
from vaelab.models.cvae import CVAE
from vaelab.models.hierarchical import HierarchicalVAE, gaussian
from vaelab.models.m2 import M2
from vaelab.models.registry import build_model, model_config
from vaelab.models.vampprior import VampPriorVAE
from vaelab.objectives.semisupervised import m2_objective

SHAPE = (1, 4, 4)


def binary(n: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def test_vampprior_density_is_the_mixture_of_posteriors_at_the_pseudo_inputs():
    torch.manual_seed(0)
    m = VampPriorVAE(ModelConfig(hidden=(16,), latent_dim=3, extra={"pseudo_inputs": 7}), SHAPE)
    q = m.encode(m.pseudo_inputs.clamp(0, 1)).base_dist  # the hard tanh keeps pseudo-inputs in [0, 1]
    z = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(1)) * 2
    direct = torch.logsumexp(Normal(q.loc, q.scale).log_prob(z[..., None, :]).sum(-1), -1) - math.log(7)
    torch.testing.assert_close(m.prior().log_prob(z), direct, rtol=1e-5, atol=1e-4)
    torch_mixture = MixtureSameFamily(
        Categorical(logits=torch.zeros(7)), Independent(Normal(q.loc, q.scale), 1)
    )
    torch.testing.assert_close(m.prior().log_prob(z), torch_mixture.log_prob(z), rtol=1e-5, atol=1e-4)
    assert m.prior().event_shape == (3,)


@pytest.mark.parametrize("bf16", [False, True])
def test_mixture_density_stays_exact_at_collapsed_components(bf16):
    """Components at the scale floor (1e-5) beside wide ones, points near them: every component's log-density
    equals the direct float64 sum of squares, under bf16 autocast too. The expanded squares in float32 had
    errors of 1e10 here, and log-densities far above any the mixture can take (docs/speedrun.md)."""
    g = torch.Generator().manual_seed(0)
    locs = 3 * torch.randn(6, 40, generator=g)
    scales = torch.cat([torch.full((3, 40), 1e-5), 0.5 + torch.rand(3, 40, generator=g)])
    z = locs[torch.arange(8) % 6] + 1e-5 * torch.randn(8, 40, generator=g)
    mix = DiagonalGaussianMixture(locs, scales)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        got = mix.component_log_prob(z)
    direct = Normal(locs.double(), scales.double()).log_prob(z.double()[:, None]).sum(-1)
    assert got.dtype == torch.float32
    near = direct > -1e6  # the components a point is near (the others are -1e10 and below)
    torch.testing.assert_close(got[near].double(), direct[near], rtol=1e-6, atol=1e-3)
    assert got.max() <= direct.max() + 1e-3 and torch.all(got[~near] < -1e6)


@pytest.mark.parametrize("seed", range(4))
def test_mixture_density_and_gradients_match_float64_at_every_scale(seed, monkeypatch):
    """Half the components at scales 0.5-2, half from the floor (1e-5) to 10, points near some components and far
    from others: the log-densities and their gradients (for the points, locations and scales, element by element)
    equal float64's direct sums of squares within the mixture's rounding tolerance; the collapsed components are
    recomputed in float64 and the wide ones stay in float32, the two joined in one result."""
    g = torch.Generator().manual_seed(seed)
    k, d = 12, 40
    locs = torch.randn(k, d, generator=g).requires_grad_()
    log_scales = torch.empty(k, d).uniform_(math.log(1e-5), math.log(10.0), generator=g)
    log_scales[: k // 2] = torch.empty(k // 2, d).uniform_(math.log(0.5), math.log(2.0), generator=g)
    scales = log_scales.exp().requires_grad_()
    z = (locs.detach()[torch.arange(30) % k] + 0.1 * torch.randn(30, d, generator=g)).requires_grad_()
    recomputed = []
    real = priors._expanded_squares

    def spy(z_, locs_, scales_):
        if z_.dtype == torch.float64:
            recomputed.append(scales_.detach().amin(-1))  # the scales of the components sent to float64
        return real(z_, locs_, scales_)

    monkeypatch.setattr(priors, "_expanded_squares", spy)
    got = DiagonalGaussianMixture(locs, scales).component_log_prob(z)
    z64, locs64, scales64 = (t.detach().double().requires_grad_() for t in (z, locs, scales))
    want = Normal(locs64, scales64).log_prob(z64[:, None]).sum(-1)
    kept = want > -1e6  # what a logsumexp over the components can ever see (the rest is 1e6 nats below)
    torch.testing.assert_close(got[kept].double(), want[kept], rtol=1e-6, atol=priors.MIXTURE_TOLERANCE)
    assert len(recomputed) == 1  # one float64 pass, for these components only:
    assert 0 < len(recomputed[0]) <= k // 2 and bool((recomputed[0] < 0.5).all())
    assert int((scales.detach().amin(-1) < 1e-3).sum()) <= len(
        recomputed[0]
    )  # every collapsed one among them
    w = torch.randn(got.shape, generator=g).mul(kept)  # a loss that sees the kept values only
    grads = torch.autograd.grad((got * w).sum(), (z, locs, scales))
    grads64 = torch.autograd.grad((want * w.double()).sum(), (z64, locs64, scales64))
    for a, b in zip(grads, grads64, strict=True):  # each row (point, component) to 1e-4 of its own largest
        err = (a.double() - b).abs()
        assert bool((err <= 1e-4 * (b.abs() + b.abs().amax(-1, keepdim=True))).all()), float(err.max())


def test_mixture_of_wide_components_stays_in_float32(monkeypatch):
    """A VampPrior in a healthy state (scales 0.5 to 1.5 in 40 dimensions, points drawn from it; the moonshot's at
    epoch 212 had a rounding bound of at most 0.0012 nats) needs no float64 at all."""
    g = torch.Generator().manual_seed(0)
    locs, scales = torch.randn(500, 40, generator=g), 0.5 + torch.rand(500, 40, generator=g)
    z = locs[:100] + scales[:100] * torch.randn(100, 40, generator=g)
    calls = []
    real = priors._expanded_squares
    monkeypatch.setattr(priors, "_expanded_squares", lambda *a: calls.append(a[0].dtype) or real(*a))
    got = DiagonalGaussianMixture(locs, scales).component_log_prob(z)
    want = Normal(locs.double(), scales.double()).log_prob(z.double()[:, None]).sum(-1)
    assert calls == [torch.float32]
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=priors.MIXTURE_TOLERANCE)


def test_mixture_under_torch_compile_takes_no_data_dependent_branch(monkeypatch):
    """While torch.compile traces, the whole expansion is float64 (no `nonzero`, no graph break), the result still
    float32 and equal to the eager one."""
    g = torch.Generator().manual_seed(0)
    locs, scales = torch.randn(20, 8, generator=g), torch.rand(20, 8, generator=g) + 0.1
    scales[:5] = 1e-5
    z = locs[:10] + 1e-5 * torch.randn(10, 8, generator=g)
    eager = DiagonalGaussianMixture(locs, scales).component_log_prob(z)
    dtypes = []
    real = priors._expanded_squares
    monkeypatch.setattr(priors, "_expanded_squares", lambda *a: dtypes.append(a[0].dtype) or real(*a))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    traced = DiagonalGaussianMixture(locs, scales).component_log_prob(z)
    assert dtypes == [torch.float64] and traced.dtype == torch.float32
    torch.testing.assert_close(traced, eager, rtol=1e-6, atol=priors.MIXTURE_TOLERANCE)


def test_mixture_sampling_matches_its_moments():
    locs = torch.tensor([[-2.0, 0.0], [3.0, 1.0]])
    scales = torch.tensor([[0.5, 1.0], [1.0, 0.2]])
    mix = DiagonalGaussianMixture(locs, scales, torch.log(torch.tensor([0.25, 0.75])))
    n = 20000
    z = sample(mix, (n,), torch.Generator().manual_seed(0))
    mean = 0.25 * locs[0] + 0.75 * locs[1]
    second = 0.25 * (scales[0] ** 2 + locs[0] ** 2) + 0.75 * (scales[1] ** 2 + locs[1] ** 2)
    sd = (second - mean**2).sqrt()
    assert z.shape == (n, 2) and torch.all((z.mean(0) - mean).abs() < 4 * sd / n**0.5)


def _vamp_top(m: HierarchicalVAE, h2: torch.Tensor) -> torch.Tensor:
    """log p(h2) of the hierarchical VampPrior by hand: (1/K) sum_k N(h2; q(h2 | mean of q(h1|u_k)))."""
    u = m.pseudo_inputs.clamp(0, 1)
    q2 = gaussian(m.q2(gaussian(m.q1(u)).mean)).base_dist
    comp = Normal(q2.loc, q2.scale).log_prob(h2[..., None, :]).sum(-1)
    return torch.logsumexp(comp, -1) - math.log(len(u))


@pytest.mark.parametrize("prior", ["normal", "vamp"])
def test_hierarchical_weights_are_the_direct_computation(prior):
    """log w = log p(x|h1) + log p(h1|h2) + log p(h2) - log q(h1|x) - log q(h2|h1), eps of h1 then h2; p(h2)
    N(0, I) or the VampPrior's mixture over the pseudo-inputs, whose images train with the rest; generate is
    the ancestral draw h2 ~ p(h2), h1 ~ p(h1|h2), decoded mean, rebuilt exactly from the same stream."""
    torch.manual_seed(0)
    extra = {"h1_dim": 4, "h2_hidden": [6]} | (
        {"prior": "vamp", "pseudo_inputs": 5} if prior == "vamp" else {}
    )
    cfg = ModelConfig(hidden=(12,), latent_dim=3, activation="tanh", extra=extra)
    m = HierarchicalVAE(cfg, SHAPE)
    x = binary(5)
    lw = m.log_importance_weights(x, 3, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    q1 = gaussian(m.q1(x))
    h1 = q1.mean + q1.stddev * torch.randn(3, 5, 4, generator=g)
    q2 = gaussian(m.q2(h1))
    h2 = q2.mean + q2.stddev * torch.randn(3, 5, 3, generator=g)
    logits = m.decoder(h1.reshape(-1, 4)).view(3, 5, *SHAPE)
    log_px = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((-3, -2, -1))
    top = Normal(0.0, 1.0).log_prob(h2).sum(-1) if prior == "normal" else _vamp_top(m, h2)
    log_p = top + gaussian(m.p1(h2)).log_prob(h1)
    torch.testing.assert_close(lw, log_px + log_p - q1.log_prob(h1) - q2.log_prob(h2), rtol=1e-5, atol=1e-4)
    # generate by hand from one stream: h2 ~ p(h2) (N(0, I), or a uniform pick of a pseudo-input's component
    # then its Gaussian), h1 ~ p(h1|h2) (a draw, not its mean), the picture = sigmoid of the decoder at h1
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if prior == "normal":
            h2 = torch.randn(6, 3, generator=g)
        else:
            q2u = gaussian(m.q2(gaussian(m.q1(m.pseudo_inputs.clamp(0, 1))).mean)).base_dist
            k = torch.multinomial(torch.full((5,), 0.2), 6, replacement=True, generator=g)
            h2 = q2u.loc[k] + q2u.scale[k] * torch.randn(6, 3, generator=g)
        p1 = gaussian(m.p1(h2))
        h1 = p1.mean + p1.stddev * torch.randn(6, 4, generator=g)
        want = torch.sigmoid(m.decoder(h1)).view(6, *SHAPE)
    torch.testing.assert_close(m.generate(6, torch.Generator().manual_seed(0)), want, rtol=0, atol=0)
    if prior == "vamp":
        lw.mean().backward()
        assert m.pseudo_inputs.grad is not None and m.pseudo_inputs.grad.abs().sum() > 0
        assert m.top_prior().event_shape == (3,)


def test_the_hierarchical_vampprior_samples_its_own_mixture():
    """generate draws h2 from the mixture of the pseudo-inputs' q(h2|.): with one pseudo-input, h2's sample
    moments are that Gaussian's, within 4 standard errors."""
    torch.manual_seed(0)
    cfg = ModelConfig(hidden=(8,), latent_dim=2, extra={"h1_dim": 3, "h2_hidden": [5], "prior": "vamp",
                                                        "pseudo_inputs": 1})  # fmt: skip
    m = HierarchicalVAE(cfg, SHAPE)
    with torch.no_grad():
        q = gaussian(m.q2(gaussian(m.q1(m.pseudo_inputs.clamp(0, 1))).mean)).base_dist
        h2 = sample(m.top_prior(), (20000,), torch.Generator().manual_seed(2))
    n = len(h2)
    assert torch.all((h2.mean(0) - q.loc[0]).abs() < 4 * q.scale[0] / n**0.5)
    assert torch.all((h2.std(0) / q.scale[0] - 1).abs() < 4 / (2 * n) ** 0.5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"prior": "vampire"}, "model.extra.prior must be one of normal, vamp, got 'vampire'"),
        ({"pseudo_inputs": 5}, "model.extra.pseudo_inputs needs model.extra.prior=vamp"),
        ({"prior": "vamp", "pseudo_inputs": 0}, "model.extra.pseudo_inputs must be an integer >= 1, got 0"),
    ],
)
def test_the_hierarchical_prior_settings_are_checked(extra, message):
    from vaelab.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        HierarchicalVAE(ModelConfig(hidden=(8,), latent_dim=2, extra=extra), SHAPE)


def test_hierarchical_defaults_are_the_iwae_papers_architecture():
    m = build_model(model_config("hierarchical").model, (1, 28, 28))
    widths = [layer.weight.shape for layer in m.modules() if isinstance(layer, torch.nn.Linear)]
    assert widths == [
        (200, 784), (200, 200), (200, 200),  # q(h1|x): 784-200-200-(100 loc, 100 scale)
        (100, 100), (100, 100), (100, 100),  # q(h2|h1): 100-100-100-(50, 50)
        (100, 50), (100, 100), (200, 100),  # p(h1|h2): 50-100-100-(100, 100)
        (200, 100), (200, 200), (784, 200),  # p(x|h1): 100-200-200-784
    ]  # fmt: skip
    assert all(
        isinstance(a, torch.nn.Tanh) for a in m.modules() if isinstance(a, (torch.nn.Tanh, torch.nn.ReLU))
    )


def _m2(seed: int = 0) -> M2:
    torch.manual_seed(seed)
    return M2(ModelConfig(hidden=(16,), latent_dim=2, extra={"classes": 3, "alpha": 0.5}), SHAPE)


def test_m2_weights_marginalise_the_label():
    """log w_k = log sum_y p(x|y,z_ky) p(y) p(z_ky) / q(z_ky|x,y), each class with its own eps."""
    m, x = _m2(), binary(4)
    lw = m.log_importance_weights(x, 5, torch.Generator().manual_seed(2))
    eps = torch.randn(5, 4, 3, 2, generator=torch.Generator().manual_seed(2))
    per_class = []
    for c in range(3):
        y = torch.full((4,), c)
        q = m.encode(x, y)
        z = q.mean + q.stddev * eps[:, :, c]
        per_class.append(m.decode(z, y).log_prob(x) + m.prior().log_prob(z) - q.log_prob(z) - math.log(3))
    torch.testing.assert_close(lw, torch.logsumexp(torch.stack(per_class, -1), -1))


def test_m2_objective_by_value():
    """Labelled: -L(x, y) and alpha * -log q(y|x); unlabelled: -U(x) = -(sum_y q(y|x) L(x, y) + H(q(y|x)))."""
    m, x = _m2(), binary(6)
    y = torch.tensor([0, -1, 2, -1, -1, 1])
    m.train()
    step = m2_objective(
        m, x, ObjectiveConfig(kl="mc", num_samples=2), 1.0, torch.Generator().manual_seed(3), y=y
    )
    rec, kl, _ = m.class_terms(x, 2, torch.Generator().manual_seed(3))
    bound = (rec - kl).mean(0) - math.log(3)
    log_q = torch.log_softmax(m.classifier(x), -1)
    unlabelled = (log_q.exp() * (bound - log_q)).sum(-1)
    known = y >= 0
    terms = torch.where(known, bound[torch.arange(6), y.clamp_min(0)], unlabelled)
    ce = -log_q[known, y[known]]
    torch.testing.assert_close(step.loss, -terms.mean() + 0.5 * ce.mean())
    torch.testing.assert_close(step.stats["elbo"], unlabelled)
    assert torch.all(unlabelled <= torch.logsumexp(bound, -1) + 1e-5)  # U(x) <= log sum_y exp L(x, y)
    m.eval()
    scored = m2_objective(m, x, ObjectiveConfig(), 1.0, torch.Generator().manual_seed(3), y=y)
    wrong = (log_q.argmax(-1) != y) & known
    torch.testing.assert_close(scored.stats["error"], wrong.float())


def test_cvae_is_conditional_and_needs_its_labels():
    torch.manual_seed(0)
    m = CVAE(ModelConfig(hidden=(16,), latent_dim=2, extra={"classes": 4}), SHAPE)
    x = binary(3)
    a = m.log_importance_weights(x, 2, torch.Generator().manual_seed(0), y=torch.tensor([0, 1, 2]))
    b = m.log_importance_weights(x, 2, torch.Generator().manual_seed(0), y=torch.tensor([3, 1, 2]))
    assert m.conditional and not torch.equal(a[:, 0], b[:, 0]) and torch.equal(a[:, 1:], b[:, 1:])
    with pytest.raises(DataError, match="needs the labels"):
        m.log_importance_weights(x, 2)
    with pytest.raises(DataError, match=r"label 7 is outside 0..3"):
        m.encode(x, torch.tensor([0, 7, 1]))
    images = m.generate(8, torch.Generator().manual_seed(0), y=torch.full((8,), 2))
    assert images.shape == (8, *SHAPE) and images.min() >= 0 and images.max() <= 1
