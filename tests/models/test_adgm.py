"""The auxiliary deep generative model (Maaløe et al. 2016) against closed forms, by hand, and on the digits.

Linearised (activations taken out, a Gaussian decoder of fixed sigma, constant scales for q(z|a,x,y) and
p(a|x,y,z)), q(a, z | x, y) is a joint Gaussian and every term of L(x, y) a Gaussian expectation: a closed form.
U(x) holds a softmax of a linear function of a: with a one-dimensional, Gauss-Hermite quadrature over a, closed
forms in z at every node. log p(x) is M2's: p(a|x,y,z) integrates to 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal, Normal

from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.distributions.gaussian import diagonal_gaussian
from vaelab.errors import ConfigError
from vaelab.models.adgm import ADGM, CLASSIFY_SEED
from vaelab.models.cvae import one_hot
from vaelab.models.registry import build_model, model_config
from vaelab.nets.mlp import ACTIVATIONS, Float32Linear
from vaelab.objectives.semisupervised import m2_objective
from vaelab.train import train

from vaelab_testing import labels_alone_error

SHAPE, SIGMA, D, A, C = (1, 3, 3), 0.6, 2, 1, 3
F64 = {"dtype": torch.float64}


def linear_adgm(alpha: float = 0.5) -> ADGM:
    """A linearised ADGM in float64: identity activations, fixed-sigma Gaussian decoder, 3 classes, a of one
    dimension; q(a|x) and q(z|a,x,y) wide (scales softplus(2) = 2.1) and p(a|x,y,z) narrower (0.69), each
    constant, so that the importance weights are bounded and IS's standard error trustworthy."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        hidden=(5,),
        latent_dim=D,
        activation="tanh",
        likelihood="gaussian",
        gaussian_variance="fixed",
        gaussian_sigma=SIGMA,
        variance_floor=0.0,
        extra={"classes": C, "aux_dim": A, "alpha": alpha},
    )
    m = ADGM(cfg, SHAPE)
    for parent in list(m.modules()):
        for name, child in parent.named_children():
            if isinstance(child, tuple(ACTIVATIONS.values())):
                setattr(parent, name, nn.Identity())
    m = m.double().eval()
    with torch.no_grad():
        for head, width, bias in ((m.q_a[-1], A, 2.0), (m.q_z.rest[-1], D, 2.0), (m.p_a.rest[-1], A, 0.0)):
            head.weight[width:] = 0.0
            head.bias[width:] = bias
    return m


def data(n: int) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(7), **F64)


def loc_scale(net: nn.Module, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = diagonal_gaussian(net(*inputs)).base_dist
    return d.loc, d.scale


class Maps:
    """The affine maps of one datum and class, read off the linearised networks at 0 and the unit vectors:
    q(a|x) = N(ma, sa^2), q(z|a,x,y) = N(M a + c0, sz^2), p(a|x,y,z) = N(P z + p0, t^2), mean of p(x|y,z) = W z + b."""

    def __init__(self, m: ADGM, flat: torch.Tensor, c: int) -> None:
        y = torch.eye(C, **F64)[c]
        self.ma, self.sa = loc_scale(m.q_a, flat)
        self.c0, self.sz = loc_scale(m.q_z, flat, torch.zeros(A, **F64), y)
        self.M = (loc_scale(m.q_z, flat, torch.eye(A, **F64), y)[0] - self.c0).T
        self.p0, self.t = loc_scale(m.p_a, flat, y, torch.zeros(D, **F64))
        self.P = (loc_scale(m.p_a, flat, y, torch.eye(D, **F64))[0] - self.p0).T
        self.b = m.decode(torch.zeros(1, D, **F64), torch.tensor(c)).mean.flatten(1)[0]
        self.W = (m.decode(torch.eye(D, **F64), torch.tensor(c)).mean.flatten(1) - self.b).T
        self.x = flat

    def terms_given_z_moments(self, a_mean, a_cov, mz, cz, cross) -> torch.Tensor:
        """E[log p(x|y,z) + log p(z) + log p(a|x,y,z)] for (a, z) jointly Gaussian: means a_mean, mz,
        covariances a_cov, cz and Cov(a, z) = cross."""
        n = len(self.x)
        resid = self.x - self.W @ mz - self.b
        rec = -0.5 * n * math.log(2 * math.pi * SIGMA**2) - (
            resid @ resid + torch.trace(self.W @ cz @ self.W.T)
        ) / (2 * SIGMA**2)
        log_pz = -0.5 * D * math.log(2 * math.pi) - 0.5 * (mz @ mz + torch.trace(cz))
        r = a_mean - self.P @ mz - self.p0  # a - P z - p0
        r_cov = a_cov - cross @ self.P.T - self.P @ cross.T + self.P @ cz @ self.P.T
        log_pa = -0.5 * torch.log(2 * math.pi * self.t**2).sum() - 0.5 * (
            r @ (r / self.t**2) + (torch.diagonal(r_cov) / self.t**2).sum()
        )
        return rec + log_pz + log_pa

    def joint_bound(self) -> torch.Tensor:
        """L(x, y), the expectation over (a, z) ~ q(a|x) q(z|a,x,y) jointly."""
        sa2 = torch.diag(self.sa**2)
        mz = self.M @ self.ma + self.c0
        cz = self.M @ sa2 @ self.M.T + torch.diag(self.sz**2)
        entropy = 0.5 * torch.log(2 * math.pi * math.e * torch.cat([self.sa, self.sz]) ** 2).sum()
        return self.terms_given_z_moments(self.ma, sa2, mz, cz, sa2 @ self.M.T) + entropy - math.log(C)

    def given_a(self, a: torch.Tensor) -> torch.Tensor:
        """The integrand of L over a: E_q(z|a,x,y)[log p(x,y,z) p(a|x,y,z) - log q(z|a,x,y)] - log q(a|x)."""
        zero = torch.zeros(A, A, **F64)
        terms = self.terms_given_z_moments(
            a, zero, self.M @ a + self.c0, torch.diag(self.sz**2), torch.zeros(A, D, **F64)
        )
        entropy_z = 0.5 * torch.log(2 * math.pi * math.e * self.sz**2).sum()
        log_qa = Normal(self.ma, self.sa).log_prob(a).sum()
        return terms + entropy_z - log_qa - math.log(C)


def quadrature(m: ADGM, flat: torch.Tensor, maps: list[Maps], nodes: int = 80):
    """Gauss-Hermite over a ~ q(a|x) (one dimension): L(x, y) per class, U(x) and E[-log q(y|a,x)] per class."""
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = torch.tensor(w / math.sqrt(2 * math.pi), **F64)
    big_l, u, ce = torch.zeros(C, **F64), torch.zeros((), **F64), torch.zeros(C, **F64)
    for tj, wj in zip(torch.tensor(t, **F64), w, strict=True):
        a = maps[0].ma + maps[0].sa * tj
        log_q = torch.log_softmax(m.q_y(flat, a), -1)
        inner = torch.stack([mp.given_a(a) for mp in maps])
        big_l += wj * inner
        u += wj * (log_q.exp() * (inner - log_q)).sum()
        ce -= wj * log_q
    return big_l, u, ce


def mc_mean(estimate, reps: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    values = torch.stack([estimate(torch.Generator().manual_seed(r)) for r in range(reps)])
    return values.mean(0), values.std(0) / math.sqrt(reps)


@pytest.fixture(scope="module")
def exact() -> dict[str, torch.Tensor]:
    """The linearised model, its data and the exact values: L(x, y) [B, C] by quadrature, checked against the
    joint closed form; U(x) [B]; E_q(a|x)[-log q(y|a,x)] [B, C]; log p(x, y) [B, C]."""
    m, x = linear_adgm(alpha=0.5), data(4)
    flat = x.flatten(1)
    out = {k: torch.empty(4, C, **F64) for k in ("L", "ce", "log_pxy")} | {"U": torch.empty(4, **F64)}
    with torch.no_grad():
        for i in range(4):
            maps = [Maps(m, flat[i], c) for c in range(C)]
            out["L"][i], out["U"][i], out["ce"][i] = quadrature(m, flat[i], maps)
            joint = torch.stack([mp.joint_bound() for mp in maps])
            torch.testing.assert_close(out["L"][i], joint, rtol=0, atol=1e-9)  # two ways to one closed form
            for c, mp in enumerate(maps):
                cov = mp.W @ mp.W.T + SIGMA**2 * torch.eye(len(mp.b), **F64)
                out["log_pxy"][i, c] = MultivariateNormal(mp.b, cov).log_prob(flat[i]) - math.log(C)
    return {"model": m, "x": x, **out}


def test_the_bounds_lie_below_the_evidence(exact):
    log_px = exact["log_pxy"].logsumexp(-1)
    assert torch.all(exact["L"] < exact["log_pxy"]) and torch.all(exact["U"] < log_px)
    assert torch.all(exact["U"] <= exact["L"].logsumexp(-1))  # U(x) <= log sum_y exp L(x, y)


@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_the_m2_objective_on_the_adgm_is_its_closed_form(kl, exact):
    m, x = exact["model"], exact["x"]
    cfg = ObjectiveConfig(kl=kl, num_samples=4000)
    with torch.no_grad():
        mean, se = mc_mean(lambda g: m2_objective(m, x, cfg, 1.0, g).stats["elbo"])
        assert torch.all((mean - exact["U"]).abs() < 4 * se + 1e-9), (mean, exact["U"], se)
        # every label known: the loss is -mean L(x, y) + alpha * mean E_q(a|x)[-log q(y|a,x)], alpha = 0.5
        y, rows = torch.tensor([2, 0, 1, 1]), torch.arange(4)
        m.train()
        loss, se_loss = mc_mean(lambda g: m2_objective(m, x, cfg, 1.0, g, y=y).loss)
        m.eval()
    expected = -exact["L"][rows, y].mean() + 0.5 * exact["ce"][rows, y].mean()
    assert abs(loss - expected) < 4 * se_loss + 1e-9, (loss, expected, se_loss)


def test_importance_weights_are_unbiased_for_the_evidence(exact):
    with torch.no_grad():
        log_w = exact["model"].log_importance_weights(exact["x"], 100_000, torch.Generator().manual_seed(4))
    ratio = (log_w - exact["log_pxy"].logsumexp(-1)).exp()  # w_k / p(x): mean 1 if unbiased for p(x)
    se = ratio.std(0) / math.sqrt(ratio.shape[0])
    assert torch.all((ratio.mean(0) - 1).abs() < 4 * se) and torch.all(se < 0.05), (ratio.mean(0), se)


def small_adgm() -> ADGM:
    torch.manual_seed(0)
    return ADGM(
        ModelConfig(hidden=(16,), latent_dim=2, extra={"classes": 3, "alpha": 0.5, "aux_dim": 3}), (1, 4, 4)
    )


def test_adgm_weights_and_bounds_sum_over_the_classes_by_hand():
    """With the draws of the generator written out (a [K, B, A] first, then z [K, B, C, D]): log w_k is the
    log-sum over classes of p(x,y,z_ky) p(a_k|x,y,z_ky) / (q(a_k|x) q(z_ky|a_k,x,y)), U(x) the mean over k of
    sum_y q(y|a_k,x) (log w_ky - log q(y|a_k,x)), and the loss, labels mixed, -L or -U plus alpha * CE."""
    m, k = small_adgm(), 5
    x = (torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    flat = x.flatten(1)
    g = torch.Generator().manual_seed(2)
    eps_a, eps_z = torch.randn(k, 4, 3, generator=g), torch.randn(k, 4, 3, 2, generator=g)
    q_a = m.aux(x)
    a = q_a.mean + q_a.stddev * eps_a
    log_w = []
    for c in range(3):
        y = torch.full((k, 4), c)
        q_z = diagonal_gaussian(m.q_z(flat, a, one_hot(y, 3, x.dtype)))
        z = q_z.mean + q_z.stddev * eps_z[:, :, c]
        p_a = diagonal_gaussian(m.p_a(flat, one_hot(y, 3, x.dtype), z))
        log_w.append(
            m.decode(z, y).log_prob(x)
            + m.prior().log_prob(z)
            + p_a.log_prob(a)
            - q_z.log_prob(z)
            - q_a.log_prob(a)
            - math.log(3)
        )
    log_w = torch.stack(log_w, -1)  # [K, B, C], log p(y) included
    torch.testing.assert_close(
        m.log_importance_weights(x, k, torch.Generator().manual_seed(2)), log_w.logsumexp(-1)
    )

    log_q = torch.log_softmax(m.q_y(flat, a), -1)  # [K, B, C]
    u = (log_q.exp() * (log_w - log_q)).sum(-1).mean(0)
    labels = torch.tensor([0, -1, 2, -1])
    known = labels >= 0
    m.train()
    step = m2_objective(
        m, x, ObjectiveConfig(kl="mc", num_samples=k), 1.0, torch.Generator().manual_seed(2), y=labels
    )
    bound = log_w.mean(0)[torch.arange(4), labels.clamp_min(0)]
    ce = -log_q.mean(0)[known, labels[known]]
    torch.testing.assert_close(step.loss, -torch.where(known, bound, u).mean() + 0.5 * ce.mean())
    torch.testing.assert_close(step.stats["elbo"], u)
    m.eval()
    scored = m2_objective(
        m, x, ObjectiveConfig(kl="mc", num_samples=k), 1.0, torch.Generator().manual_seed(2), y=labels
    )
    wrong = (m.q_y(flat, q_a.mean).argmax(-1) != labels) & known  # classify: q(y|a,x) at the mean of q(a|x)
    torch.testing.assert_close(scored.stats["error"], wrong.float())


def test_adgm_learns_from_unlabelled_digits(config_factory):
    """On the 8x8 digits (grey, Gaussian decoder) with 50 of 1,497 training labels the ADGM's test error falls
    well under chance (0.9) and under that of the same classifier network, q(y|a,x) at the mean of q(a|x),
    trained by cross-entropy on the 50 labelled images alone for as many steps. Measured (seeds 0, 1, 2):
    0.11, 0.10, 0.11 against 0.21, 0.21, 0.23. Binarized digits teach neither M2 nor the ADGM more than the
    labels do (0.23-0.25 against 0.25 after 25 epochs): the pixels' grey levels are what the decoder uses."""
    epochs, batch = 15, 64
    cfg = model_config("adgm", config_factory()).replace(
        **{
            "data.labelled": 50,
            "data.binarize": "none",
            "model.likelihood": "gaussian",
            "model.hidden": (64,),
            "model.latent_dim": 2,
            "model.extra": {"aux_dim": 8, "alpha": 10.0},
            "train.epochs": epochs,
            "train.batch_size": batch,
            "train.lr": 3e-3,
            "train.lr_schedule": "constant",
        }
    )
    errors = [r["test_error"] for r in train(cfg).history]
    baseline = labels_alone_error(cfg, epochs, batch)
    assert errors[-1] < 0.2 and errors[-1] < baseline - 0.05, (errors, baseline)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"model.extra": {"aux_dim": 0}},
            r"model.extra.aux_dim \(dimensions of the auxiliary a\) must be an integer >= 1, got 0",
        ),
        ({"model.extra": {"aux_dim": 2.5}}, "model.extra.aux_dim .* must be an integer >= 1, got 2.5"),
        (
            {"model.extra": {"alpha": -1.0}},
            r"model.extra.alpha \(weight of the labelled classification loss\) must be a number >= 0, got -1.0",
        ),
        ({"model.extra": {"alpha": "big"}}, "model.extra.alpha .* must be a number >= 0, got 'big'"),
        ({"model.extra": {"classes": 1}}, "model.extra.classes must be an integer >= 2, got 1"),
        (
            {"model.extra": {"aux_dims": 4}},
            "unknown key.* aux_dims for adgm; it takes: classes, alpha, aux_dim",
        ),
        ({"model.features": "runs/m1"}, r"model.features \(runs/m1\) is M1\+M2's, for model m2"),
        ({"model.body": "conv"}, "model.body must be mlp, not 'conv'"),
    ],
)
def test_bad_settings_are_one_line_config_errors(changes, message, config_factory):
    cfg = model_config("adgm", config_factory()).replace(**changes)
    with pytest.raises(ConfigError, match=message) as e:
        train(cfg)
    assert "\n" not in str(e.value)


def test_dense_networks_only():
    for changes, message in (
        ({"body": "conv"}, "model.body must be mlp, not 'conv'"),
        ({"hidden": ()}, "at least one hidden layer"),
    ):
        with pytest.raises(ConfigError, match=message):
            ADGM(ModelConfig(**changes), (1, 28, 28))


def test_defaults_are_the_papers_mnist_settings():
    cfg = model_config("adgm")
    m = build_model(cfg.model, (1, 28, 28))
    assert cfg.model.hidden == (500, 500) and cfg.model.activation == "relu" and cfg.data.labelled == 100
    assert (
        m.latent_dim == 100 and m.aux_dim == 100 and cfg.train.lr == 3e-4 and cfg.objective.name == "default"
    )
    assert isinstance(m.q_y.act, nn.ReLU) and [layer.out_features for layer in m.q_y.inputs] == [500, 500]


def test_the_opt_in_settings_default_to_the_model_as_it_was():
    """model.extra without batch_norm and classify_samples, or with their defaults, builds the same networks
    (the same parameters, no normalisation layer) and reads q(y|a,x) at the mean of q(a|x)."""
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    plain = small_adgm()
    torch.manual_seed(0)
    cfg = ModelConfig(
        hidden=(16,),
        latent_dim=2,
        extra={"classes": 3, "alpha": 0.5, "aux_dim": 3, "batch_norm": False, "classify_samples": 0},
    )
    explicit = ADGM(cfg, (1, 4, 4))
    a, b = plain.state_dict(), explicit.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in explicit.modules())
    plain.eval()
    torch.testing.assert_close(
        plain.classify(x).logits, torch.log_softmax(plain.q_y(x.flatten(1), plain.aux(x).mean), -1)
    )


def bn_adgm(**extra) -> ADGM:
    torch.manual_seed(0)
    cfg = ModelConfig(
        hidden=(16, 8),
        latent_dim=2,
        extra={"classes": 3, "alpha": 0.5, "aux_dim": 3, "batch_norm": True, **extra},
    )
    return ADGM(cfg, (1, 4, 4))


def test_batch_norm_normalises_every_hidden_layer_over_images_draws_and_classes():
    """In training, each hidden pre-activation leaves its normalisation with mean 0 and variance 1 over all the
    rows its network sees: for q(z|a,x,y), images x draws of a x classes."""
    m, k, b = bn_adgm(), 4, 6
    norms = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm1d)]
    # two hidden layers in each of q(a|x), q(y|a,x), q(z|a,x,y), p(a|x,y,z) and p(x|y,z)
    assert len(norms) == 10 and [n.num_features for n in m.q_z.modules() if n in norms] == [16, 8]
    seen = {}
    hooks = [n.register_forward_hook(lambda mod, i, out, n=n: seen.update({n: (i[0], out)})) for n in norms]
    x = torch.rand(b, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    m.train()
    m.class_terms(x, k, torch.Generator().manual_seed(6))
    for h in hooks:
        h.remove()
    assert seen[m.q_z.act[0]][1].shape == (k, b, 3, 16)  # the statistics span the classes and the draws
    for before, out in seen.values():
        rows, v = out.reshape(-1, out.shape[-1]), before.reshape(-1, before.shape[-1]).var(0, unbiased=False)
        torch.testing.assert_close(rows.mean(0), torch.zeros(rows.shape[1]), atol=1e-5, rtol=0)
        torch.testing.assert_close(rows.var(0, unbiased=False), v / (v + 1e-5))  # BatchNorm1d's eps 1e-5


def test_batch_norm_passes_gradient_to_every_network_and_scores_images_alone_in_evaluation():
    """The m2 objective's loss reaches the normalisation of all five networks; in evaluation (running
    statistics) an image's class probabilities do not depend on the rest of its batch."""
    m = bn_adgm()
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    m.train()
    loss = m2_objective(
        m,
        x,
        ObjectiveConfig(num_samples=2),
        1.0,
        torch.Generator().manual_seed(1),
        y=torch.tensor([0, -1, 2, -1, -1, 1]),
    ).loss
    loss.backward()
    for net in (m.q_a, m.q_y, m.q_z, m.p_a, m.decoder):
        grads = [n.weight.grad for n in net.modules() if isinstance(n, nn.BatchNorm1d)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m.classify(x).logits[:2], m.classify(x[:2]).logits)


def test_classify_samples_averages_the_class_probabilities_over_draws_of_a():
    """classify_samples S: q(y|x) read as (1/S) sum_s q(y|a_s,x), a_s = mean + sd * eps_s, eps [S, B, A] drawn
    from a stream seeded with CLASSIFY_SEED at every call (the same read-out twice)."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        hidden=(16,), latent_dim=2, extra={"classes": 3, "alpha": 0.5, "aux_dim": 3, "classify_samples": 7}
    )
    m = ADGM(cfg, (1, 4, 4)).eval()
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        q_a = m.aux(x)
        eps = torch.randn(7, 5, 3, generator=torch.Generator().manual_seed(CLASSIFY_SEED))
        probs = torch.softmax(m.q_y(x.flatten(1), q_a.mean + q_a.stddev * eps), -1).mean(0)
        torch.testing.assert_close(m.classify(x).probs, probs)
        torch.testing.assert_close(m.classify(x).probs, m.classify(x).probs)
        plug_in = torch.softmax(m.q_y(x.flatten(1), q_a.mean), -1)
    assert not torch.allclose(probs, plug_in)  # the draws matter: a is not a point


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"batch_norm": "yes"}, "model.extra.batch_norm must be true or false, got 'yes'"),
        ({"classify_samples": -1}, r"model.extra.classify_samples \(.*\) must be an integer >= 0, got -1"),
        ({"classify_samples": 2.5}, r"model.extra.classify_samples .* got 2.5"),
    ],
)
def test_bad_opt_in_settings_are_one_line_config_errors(extra, message):
    with pytest.raises(ConfigError, match=message) as e:
        ADGM(ModelConfig(extra={"classes": 3, **extra}), (1, 4, 4))
    assert "\n" not in str(e.value)


def test_the_opt_in_settings_are_registered_and_given_as_flags():
    """`--set model.extra.batch_norm=true --set model.extra.classify_samples=10` passes the registry's key check and
    builds the batch-normalised model with the averaged read-out; a misspelt key is refused naming the keys."""
    from vaelab.config import build_config
    from vaelab.models.config_checks import check_model_config

    flags = {"model.name": "adgm", "model.extra.batch_norm": "true", "model.extra.classify_samples": "10"}
    cfg = build_config(None, flags, base=model_config("adgm"))
    check_model_config(cfg)
    model = build_model(cfg.model, (1, 8, 8))
    assert model.classify_samples == 10 and any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    bad = build_config(
        None, {"model.name": "adgm", "model.extra.batch_nrom": "true"}, base=model_config("adgm")
    )
    with pytest.raises(ConfigError, match=r"unknown key\(s\) batch_nrom for adgm; it takes: .*batch_norm"):
        check_model_config(bad)


def test_float32_linear_is_exact_float32_arithmetic_under_bf16_autocast():
    """The classifiers' logits layer: under bf16 autocast its output, and its weights' gradient through a
    softmax-weighted sum of large per-class terms, equal float32 arithmetic on the same input; nn.Linear's
    drift once the logits are large (the ADGM's failure in bf16; docs/semi-supervised-notes.md)."""
    h = 1000 * torch.randn(64, 50, generator=torch.Generator().manual_seed(0))
    f = 100 * torch.randn(64, 10, generator=torch.Generator().manual_seed(1))

    def run(layer: nn.Linear, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
        layer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = layer(h)
            log_q = torch.log_softmax(logits, -1)
            loss = (log_q.exp() * (f - log_q)).sum()
        loss.backward()  # outside autocast, as the training step does
        return logits.detach(), layer.weight.grad.clone()

    torch.manual_seed(2)
    ours, plain = Float32Linear(50, 10), nn.Linear(50, 10)
    plain.load_state_dict(ours.state_dict())  # the same weights, the same state-dict keys
    ref_logits, ref_grad = run(ours, bf16=False)
    logits, grad = run(ours, bf16=True)
    assert logits.dtype == torch.float32 and torch.equal(logits, ref_logits)
    assert torch.equal(grad, ref_grad)
    plain_logits, plain_grad = run(plain, bf16=True)
    cos = torch.nn.functional.cosine_similarity(plain_grad.flatten(), ref_grad.flatten(), 0)
    assert plain_logits.dtype == torch.bfloat16 and cos < 0.99
    # outside autocast it is a plain linear layer, in the input's dtype and on any device
    x64 = torch.randn(3, 50, dtype=torch.float64)
    plain64 = nn.Linear(50, 10).double()
    ours.double().load_state_dict(plain64.state_dict())
    assert torch.equal(ours(x64), plain64(x64))
    assert Float32Linear(4, 2, device="meta")(torch.empty(3, 4, device="meta")).shape == (3, 2)


def test_the_classifiers_logits_are_float32_under_bf16_autocast():
    """The ADGM's q(y|a,x) and M2's q(y|x) end in a float32 layer; their other layers run in bf16."""
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    adgm = build_model(model_config("adgm").model, (1, 28, 28))
    m2 = build_model(model_config("m2").model, (1, 28, 28))
    assert isinstance(adgm.q_y.rest[-1], Float32Linear) and isinstance(m2.classifier[-1], Float32Linear)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = adgm.aux(x).mean
        assert a.dtype == torch.bfloat16
        assert adgm.q_y(x.flatten(1), a).dtype == torch.float32
        assert m2.classifier(x).dtype == torch.float32
        assert m2.classifier[0](x).dtype == torch.bfloat16
