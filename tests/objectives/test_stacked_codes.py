"""M1+M2's code settings (issue #19): M2 on M1's active units only (`active_sd`) and a full covariance per class
for p(z1|y,z2) (`code_cov`), against closed forms on a linear-Gaussian version: M1 a linearised VAE with a 3-d
code whose third unit is inactive (q(z1_3|x) = N(0, 1), ignored by the decoder), M2 linearised. Then p(z1) is a
mixture over y of Gaussians N(b_y, W_y W_y^T + L_y L_y^T) on the active units times N(0, 1) on the inactive one,
and log p(x) a mixture of Gaussians in x."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from test_linear_gaussian_closed_forms import CFG, SHAPE, SIGMA, affine, data, linearised
from torch import nn
from torch.distributions import MultivariateNormal, Normal

from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.distributions.gaussian import MIN_SCALE
from vaelab.errors import ConfigError
from vaelab.models.stacked import StackedM2, active_units
from vaelab.models.vae import VAE
from vaelab.objectives.semisupervised import m2_objective

CLASSES, D1, D2 = 3, 3, 2
F64 = {"dtype": torch.float64}


def m1_with_a_dead_unit() -> VAE:
    """A linearised VAE of a 3-d code whose last unit is inactive: q(z1_3|x) = N(0, 1), p(x|z1) ignores it."""
    torch.manual_seed(0)
    m1 = linearised(VAE(dataclasses.replace(CFG, latent_dim=D1), SHAPE))
    with torch.no_grad():
        m1.head.weight[[D1 - 1, 2 * D1 - 1]] = 0.0  # the unit's location and raw scale no longer see x
        m1.head.bias[D1 - 1] = 0.0
        m1.head.bias[2 * D1 - 1] = math.log(math.expm1(1.0 - MIN_SCALE))  # scale = 1
        m1.head.weight[: D1 - 1] *= 3.0  # the live units' means spread well beyond any threshold used here
        m1.head.bias[D1 : 2 * D1 - 1] += 2.0  # a wide q(z1|x) on them: importance weights of light tail
        first = next(m for m in m1.decoder.modules() if isinstance(m, nn.Linear))
        first.weight[:, D1 - 1] = 0.0
    return m1


def stacked(code_cov: str, active_sd: float, components: int = 1) -> StackedM2:
    """M1 above under a linearised M2 (D2 = 2, 3 classes) with the given code settings, float64, eval mode;
    `components` > 1: a mixture a class with unequal weights and spread offsets."""
    m1 = m1_with_a_dead_unit()
    extra = {"classes": CLASSES, "alpha": 0.5, "code_cov": code_cov, "active_sd": active_sd}
    if components > 1:
        extra["code_components"] = components
    cfg = ModelConfig(**{**CFG.__dict__, "latent_dim": D2, "extra": extra})
    m = StackedM2(cfg, SHAPE, features=m1)
    m.head = linearised(m.head)
    if code_cov == "full":
        with torch.no_grad():  # correlated, class-specific covariances
            m.tril_raw.copy_(0.6 * torch.randn(m.tril_raw.shape, generator=torch.Generator().manual_seed(3)))
    if components > 1:
        with torch.no_grad():
            g = torch.Generator().manual_seed(6)
            m.offsets.copy_(2.0 * torch.randn(m.offsets.shape, generator=g))
            m.mix_logits.copy_(torch.randn(m.mix_logits.shape, generator=g))
    return m.double().eval()


def test_active_units_are_the_units_whose_code_mean_varies():
    m1 = m1_with_a_dead_unit().float()
    assert active_units(m1, 0.1).tolist() == [True, True, False]
    assert active_units(m1, 0.0).tolist() == [True, True, True]  # 0: every unit
    assert active_units(m1, 1e6).tolist() == [True, True, True]  # none passes (an untrained M1): every unit
    m = stacked("full", 0.1)  # M2 sees the two live units: its classifier and covariances are 2-d
    assert m.code_dim == 2 and m.tril_raw.shape == (CLASSES, 2, 2)


def evidence(m: StackedM2, x: torch.Tensor) -> torch.Tensor:
    """log p(x) [B]: p(z1 active | y) = N(b_y, W_y W_y^T + L_y L_y^T), x = A z1 + a + N(0, SIGMA^2 I); with K
    components, p(z1 active | y) = sum_k pi_yk N(b_y + d_yk, W_y W_y^T + L_yk L_yk^T)."""
    flat = x.flatten(1)
    a_w, a_b = affine_m1(m)
    k = m.components
    lower = m.scale_tril().double().reshape(CLASSES, k, 2, 2)
    offsets = m.offsets.double() if k > 1 else torch.zeros(CLASSES, 1, 2, **F64)
    log_pi = m.mix_logits.double().log_softmax(-1) if k > 1 else torch.zeros(CLASSES, 1, **F64)
    parts = []
    for c in range(CLASSES):
        w2, b2 = affine(lambda z, c=c: m.head.decode(z, torch.full((len(z),), c)).mean.flatten(1))
        for j in range(k):
            cov1 = w2 @ w2.T + lower[c, j] @ lower[c, j].T
            cov = a_w @ cov1 @ a_w.T + SIGMA**2 * torch.eye(flat.shape[1], **F64)
            mean = a_w @ (b2 + offsets[c, j]) + a_b
            parts.append(MultivariateNormal(mean, cov).log_prob(flat) - math.log(CLASSES) + log_pi[c, j])
    return torch.logsumexp(torch.stack(parts, -1), -1)


def affine_m1(m: StackedM2) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [N, 2], a [N]) of M1's decoder mean on the two active units (the third is ignored)."""
    base = m.features.decode(torch.zeros(1, D1, **F64)).mean.flatten(1)[0]
    cols = [m.features.decode(torch.eye(D1, **F64)[i : i + 1]).mean.flatten(1)[0] - base for i in range(2)]
    return torch.stack(cols, 1), base


@pytest.mark.parametrize("components", [1, 2])
def test_full_covariance_on_active_units_keeps_importance_weights_unbiased_for_p_x(components):
    m, x = stacked("full", 0.1, components), data(4)
    with torch.no_grad():
        assert m.active.tolist() == [True, True, False]
        log_px = evidence(m, x)
        log_w = m.log_importance_weights(x, 40_000, torch.Generator().manual_seed(4))
        ratio = (log_w - log_px).exp()  # mean_k w_k / p(x) -> 1
        se = ratio.std(0) / math.sqrt(len(ratio))
        assert torch.all((ratio.mean(0) - 1).abs() < 4 * se) and torch.all(se < 0.1), (ratio.mean(0), se)
        # and the unlabelled bound (MC over many draws) stays below log p(x)
        u = m2_objective(m, x, ObjectiveConfig(kl="analytic", num_samples=2000), 1.0, None).stats["elbo"]
        assert torch.all(u < log_px), (u, log_px)


@pytest.mark.parametrize("components", [1, 3])
def test_full_covariance_terms_sum_the_classes_by_hand(components):
    """Per draw: rec = log p(x|z1) + log N(z1_3; 0, 1) + log N(z1 active; mu(y, z2), L_y L_y^T) (K components:
    log sum_k pi_yk N(z1 active; mu(y, z2) + d_yk, L_yk L_yk^T)), kl = log q(z2|z1,y) - log p(z2) + log q(z1|x);
    U(x) = sum_y q(y|z1)(rec - kl + log p(y) - log q(y|z1))."""
    m, x = stacked("full", 0.1, components), data(3)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        step = m2_objective(m, x, ObjectiveConfig(kl="mc"), 1.0, g)
        g = torch.Generator().manual_seed(5)
        q1 = m.features.encode(x)
        z1 = q1.mean + q1.stddev * torch.randn(1, 3, D1, generator=g, **F64)
        eps = torch.randn(1, 3, CLASSES, D2, generator=g, **F64)
        codes = z1[..., :2].reshape(3, 1, 1, 2)
        log_q = torch.log_softmax(m.head.classifier(codes), -1)
        m1 = m.features.decode(z1).log_prob(x) - q1.log_prob(z1) + Normal(0.0, 1.0).log_prob(z1[..., 2])
        u = torch.zeros(3, **F64)
        for c in range(CLASSES):
            y = torch.full((3,), c)
            q2 = m.head.encode(codes, y)
            z2 = q2.mean + q2.stddev * eps[0, :, c]
            mean = m.head.decode(z2, y).mean.reshape(3, 2)
            if components == 1:
                rec = MultivariateNormal(mean, scale_tril=m.scale_tril()[c].double()).log_prob(z1[0, :, :2])
            else:
                rec = torch.logsumexp(
                    torch.stack(
                        [
                            m.mix_logits[c].log_softmax(-1)[j]
                            + MultivariateNormal(
                                mean + m.offsets[c, j], scale_tril=m.scale_tril()[c, j]
                            ).log_prob(z1[0, :, :2])
                            for j in range(components)
                        ]
                    ),
                    0,
                )
            term = rec + m.head.prior().log_prob(z2) - q2.log_prob(z2)
            u += log_q[:, c].exp() * (m1[0] + term - math.log(CLASSES) - log_q[:, c])
    torch.testing.assert_close(step.stats["elbo"], u)


def test_code_settings_refuse_bad_values_in_one_line():
    m1 = m1_with_a_dead_unit().float()
    base = {**CFG.__dict__, "latent_dim": D2}
    with pytest.raises(ConfigError, match=r"model.extra.code_cov must be one of diagonal, full, got 'dense'"):
        StackedM2(ModelConfig(**{**base, "extra": {"code_cov": "dense"}}), SHAPE, features=m1)
    with pytest.raises(ConfigError, match=r"model.extra.active_sd must be >= 0"):
        StackedM2(ModelConfig(**{**base, "extra": {"active_sd": -1}}), SHAPE, features=m1)
    for bad in ({"code_components": 0, "code_cov": "full"}, {"code_components": 2, "code_cov": "diagonal"}):
        with pytest.raises(
            ConfigError, match=r"model.extra.code_components must be >= 1, and above 1 only with"
        ):
            StackedM2(ModelConfig(**{**base, "extra": bad}), SHAPE, features=m1)


def test_a_mixture_a_class_is_a_density_in_the_codes_and_one_component_is_the_single_gaussian():
    """With K components, p(z1 active | y, z2) integrates to 1 over a grid of the 2 active units, and K = 2 with
    equal offsets and factors equals K = 1 with that factor."""
    m = stacked("full", 0.1, 2)
    lin = torch.linspace(-30, 30, 601, **F64)
    grid = torch.cartesian_prod(lin, lin)
    mean = torch.zeros(1, CLASSES, 2, **F64)
    with torch.no_grad():
        dens = m._full_codes(mean, grid.reshape(-1, 1, 2)).exp()  # [N, C]
        mass = dens.sum(0) * (lin[1] - lin[0]) ** 2
        torch.testing.assert_close(mass, torch.ones(CLASSES, **F64), atol=2e-3, rtol=0)
        one = stacked("full", 0.1)
        m.offsets.zero_()
        m.tril_raw.copy_(one.tril_raw.unsqueeze(1).expand_as(m.tril_raw))
        codes = torch.randn(5, 1, 2, generator=torch.Generator().manual_seed(8), **F64)
        torch.testing.assert_close(m._full_codes(mean, codes), one._full_codes(mean, codes))


def test_new_runs_get_the_fix_and_older_configs_keep_the_form_their_checkpoints_hold():
    from vaelab import model_config

    assert model_config("m2").model.extra == {"active_sd": 0.1, "code_cov": "full"}
    old = StackedM2(ModelConfig(**{**CFG.__dict__, "latent_dim": D2}), SHAPE, features=m1_with_a_dead_unit())
    assert old.code_dim == D1 and not hasattr(old, "tril_raw")  # every unit, diagonal p(z1|y,z2)
    assert "active" not in old.state_dict()  # derived from M1 and the config, not stored
    assert old.classify_with == "q"  # older runs classify with q(y|z1) as they were scored
    assert old.alpha == 10.0 and stacked("full", 0.1).alpha == 0.5  # M2's default; a given alpha is kept
    new = StackedM2(
        ModelConfig(**{**CFG.__dict__, "extra": {"code_cov": "full"}}), SHAPE, features=old.features
    )
    assert new.alpha == 1.0  # full covariance: alpha 1 unless given
    # the benchmark's diagonal cells (benchmarks/semi_supervised.py, DIAGONAL_SETTINGS): the given alpha and
    # classifier are kept, M2 models the active units only, and no full covariance is built
    extra = {"active_sd": 0.1, "code_cov": "diagonal", "classify": "q", "alpha": 1.0}
    diag = StackedM2(ModelConfig(**{**CFG.__dict__, "extra": extra}), SHAPE, features=old.features)
    assert (diag.alpha, diag.classify_with, diag.code_dim) == (1.0, "q", 2) and not hasattr(diag, "tril_raw")


def test_the_model_classifier_is_m2s_posterior_at_the_code_mean():
    """classify "model": logits log N(z1; mu(y, E z2), L_y L_y^T) - KL(q(z2|z1,y) || p(z2)) at the code mean
    (up to a constant); "q": q(y|z1); a bad choice is one line."""
    m, x = stacked("full", 0.1), data(5)
    assert m.classify_with == "model"  # the default with full covariances
    with torch.no_grad():
        codes = m.features.encode(x).mean[:, :2]
        by_hand = torch.empty(5, CLASSES, **F64)
        for c in range(CLASSES):
            y = torch.full((5,), c)
            q2 = m.head.encode(codes.reshape(5, 1, 1, 2), y)
            mean = m.head.decode(q2.mean, y).mean.reshape(5, 2)
            rec = MultivariateNormal(mean, scale_tril=m.scale_tril()[c].double()).log_prob(codes)
            by_hand[:, c] = rec - torch.distributions.kl_divergence(q2, m.head.prior())
        torch.testing.assert_close(m.classify(x).logits, torch.log_softmax(by_hand, -1))
        m.classify_with = "q"
        q = torch.log_softmax(m.head.classifier(codes.reshape(5, 1, 1, 2)), -1)
        torch.testing.assert_close(m.classify(x).logits, q)
    base = {**CFG.__dict__, "latent_dim": D2}
    with pytest.raises(ConfigError, match=r"model.extra.classify must be one of q, model, got 'bayes'"):
        StackedM2(
            ModelConfig(**{**base, "extra": {"classify": "bayes"}}), SHAPE, features=m1_with_a_dead_unit()
        )


def test_a_mixture_a_class_decodes_its_mean():
    """decode(z2, y) with K components is M1's picture of the mixture's mean, mu(y, z2) + sum_k pi_yk d_yk."""
    m = stacked("full", 0.1, 2)
    z2, y = torch.randn(4, D2, generator=torch.Generator().manual_seed(9), **F64), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        active = m.head.decode(z2, y).mean.reshape(4, 2)
        shift = (m.mix_logits.softmax(-1)[..., None] * m.offsets).sum(1)[y]
        z1 = torch.cat([active + shift, torch.zeros(4, 1, **F64)], -1)
        torch.testing.assert_close(m.decode(z2, y).mean, m.features.decode(z1).mean)
        assert not torch.allclose(shift, torch.zeros_like(shift))
