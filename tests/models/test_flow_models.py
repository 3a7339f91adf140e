"""Flow posteriors in the models (model.posterior): the VAE, the VampPrior and both layers of the hierarchical VAE
train with them, their importance weights are log p(x, z) - log q(z|x) computed by hand for the same draws, a
checkpoint gives back the same q, and bad settings are one line each."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal

from vaelab.cli import main
from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.distributions.flows import IAFFlow, PlanarFlow, SylvesterFlow
from vaelab.distributions.gaussian import diagonal_gaussian
from vaelab.distributions.sampling import rsample
from vaelab.evaluate.decomposition import decompose
from vaelab.models.hierarchical import HierarchicalVAE
from vaelab.models.vae import VAE
from vaelab.models.vampprior import VampPriorVAE
from vaelab.objectives.elbo import elbo_objective
from vaelab.train import load, train

from vaelab_testing import TINY_TRAIN

SHAPE = (1, 4, 4)
POSTERIORS = ("planar:3", "iaf:2:8", "sylvester:2")


def binary(n: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def by_hand(
    flow: torch.nn.Module, h: torch.Tensor, base, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """z and log q(z|x) for noise eps: the base's z0 = loc + scale * eps and log q0(z0), then each layer by its
    formula (planar: u_hat, tanh; IAF: sigma * z + (1 - sigma) * m; Sylvester: z + P R tanh(R~ P^T z + b)),
    subtracting its log|det J|."""
    loc, scale = base.base_dist.loc, base.base_dist.scale
    z = loc + scale * eps
    log_q = Normal(loc, scale).log_prob(z).sum(-1)
    if isinstance(flow, PlanarFlow):
        d = z.shape[-1]
        p = flow.params(h).view(*h.shape[:-1], flow.length, 2 * d + 1)
        for k in range(flow.length):
            u, w, b = p[..., k, :d], p[..., k, d : 2 * d], p[..., k, 2 * d]
            wu = (w * u).sum(-1, keepdim=True)
            u_hat = u + (F.softplus(wu) - 1 - wu) * w / (w * w).sum(-1, keepdim=True)
            a = (w * z).sum(-1) + b
            log_q = log_q - torch.log(torch.abs(1 + (w * u_hat).sum(-1) * (1 - torch.tanh(a) ** 2)))
            z = z + u_hat * torch.tanh(a)[..., None]
    elif isinstance(flow, SylvesterFlow):
        d = z.shape[-1]
        p = flow.params(h).view(*h.shape[:-1], flow.length, d * d + 3 * d)
        for k in range(flow.length):
            full = p[..., k, : d * d].reshape(*h.shape[:-1], d, d)
            r = torch.triu(full, 1) + torch.diag_embed(torch.tanh(p[..., k, d * d : d * d + d]))
            rt = torch.triu(full.transpose(-1, -2), 1) + torch.diag_embed(
                torch.tanh(p[..., k, d * d + d : -d])
            )
            b = p[..., k, -d:]
            v = z.flip(-1) if k % 2 else z
            a = (rt @ v.unsqueeze(-1)).squeeze(-1) + b
            jac_diag = 1 + r.diagonal(dim1=-2, dim2=-1) * rt.diagonal(dim1=-2, dim2=-1) * (
                1 - torch.tanh(a) ** 2
            )
            log_q = log_q - torch.log(torch.abs(jac_diag)).sum(-1)
            step = (r @ torch.tanh(a).unsqueeze(-1)).squeeze(-1)
            z = z + (step.flip(-1) if k % 2 else step)
    else:
        assert isinstance(flow, IAFFlow)
        for made in flow.steps:
            m, s = made(z, h)
            sigma = torch.sigmoid(s)
            log_q = log_q - torch.log(sigma).sum(-1)
            z = sigma * z + (1 - sigma) * m
    return z, log_q


def log_px_given(decoder: torch.nn.Module, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    logits = decoder(z.reshape(-1, z.shape[-1])).view(*z.shape[:-1], *SHAPE)
    return Bernoulli(logits=logits).log_prob(x).sum((-3, -2, -1))


def two_steps(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Two Adam steps of the ELBO with a Monte Carlo KL; the flow's weights move, the loss stays finite."""
    flows = [m for m in model.modules() if isinstance(m, (PlanarFlow, IAFFlow, SylvesterFlow))]
    before = [p.detach().clone() for f in flows for p in f.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(2):
        loss = elbo_objective(
            model, x, ObjectiveConfig(kl="mc"), 1.0, torch.Generator().manual_seed(step)
        ).loss
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = [p for f in flows for p in f.parameters()]
    assert flows and all(not torch.equal(a, b) for a, b in zip(after, before))


@pytest.mark.parametrize("posterior", POSTERIORS)
@pytest.mark.parametrize("kind", [VAE, VampPriorVAE])
def test_one_layer_weights_are_log_joint_minus_log_q_by_hand(kind, posterior):
    torch.manual_seed(0)
    model = kind(ModelConfig(hidden=(16,), latent_dim=3, posterior=posterior, extra=_extra(kind)), SHAPE)
    x = binary(5)
    two_steps(model, x)
    with torch.no_grad():
        log_w = model.log_importance_weights(x, 4, torch.Generator().manual_seed(1))
        h = model.encoder(x)
        eps = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(1))
        z, log_q = by_hand(model.flow, h, diagonal_gaussian(model.head(h)), eps)
        if kind is VAE:
            log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
        else:  # the mixture of the encoder's Gaussians (before the flow) at the pseudo-inputs
            u = F.hardtanh(model.pseudo_inputs, 0.0, 1.0)
            comp = diagonal_gaussian(model.head(model.encoder(u))).base_dist
            log_pz = torch.logsumexp(
                Normal(comp.loc, comp.scale).log_prob(z[..., None, :]).sum(-1), -1
            ) - math.log(len(u))
        want = log_px_given(model.decoder, z, x) + log_pz - log_q
    torch.testing.assert_close(log_w, want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(model.encode(x).log_prob(z), log_q, rtol=1e-5, atol=1e-4)  # off the cache


def _extra(kind: type) -> dict:
    return {"pseudo_inputs": 4} if kind is VampPriorVAE else {}


@pytest.mark.parametrize("posterior", POSTERIORS)
def test_hierarchical_weights_with_a_flow_on_each_layer_are_by_hand(posterior):
    """h1 ~ q(h1|x) (a flow read from the x -> h1 body), h2 ~ q(h2|h1) (a flow read from q(h2|h1)'s last hidden
    layer), eps of h1 then h2 from the one generator."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        hidden=(12,),
        latent_dim=3,
        activation="tanh",
        posterior=posterior,
        extra={"h1_dim": 4, "h2_hidden": [6]},
    )
    model = HierarchicalVAE(cfg, SHAPE)
    x = binary(5)
    two_steps(model, x)
    with torch.no_grad():
        log_w = model.log_importance_weights(x, 3, torch.Generator().manual_seed(1))
        g = torch.Generator().manual_seed(1)
        f1 = model.q1[0](x)
        h1, log_q1 = by_hand(
            model.flow1, f1, diagonal_gaussian(model.q1[1](f1)), torch.randn(3, 5, 4, generator=g)
        )
        f2 = model.q2[:-1](h1)
        h2, log_q2 = by_hand(
            model.flow2, f2, diagonal_gaussian(model.q2[-1](f2)), torch.randn(3, 5, 3, generator=g)
        )
        log_p = Normal(0.0, 1.0).log_prob(h2).sum(-1) + diagonal_gaussian(model.p1(h2)).log_prob(h1)
        want = log_px_given(model.decoder, h1, x) + log_p - log_q1 - log_q2
    torch.testing.assert_close(log_w, want, rtol=1e-5, atol=1e-4)


def test_a_gaussian_posterior_adds_no_weights():
    """model.posterior gaussian (the default) builds the model as before: no flow, the same parameters."""
    cfg = ModelConfig(hidden=(16,), latent_dim=3)
    for kind in (VAE, VampPriorVAE):
        assert kind(cfg, SHAPE).flow is None
    model = HierarchicalVAE(
        ModelConfig(hidden=(12,), latent_dim=3, extra={"h1_dim": 4, "h2_hidden": [6]}), SHAPE
    )
    assert model.flow1 is None and model.flow2 is None
    assert not any("flow" in name for name in model.state_dict())


@pytest.mark.parametrize(
    ("name", "posterior", "extra"),
    [
        ("vae", "planar:2", {}),
        ("vampprior", "iaf:1:8", {"pseudo_inputs": 5}),
        ("hierarchical", "iaf:2:8", {"h1_dim": 4, "h2_hidden": [6]}),
        ("vae", "sylvester:2", {}),
    ],
)
def test_a_checkpoint_gives_back_the_same_flow(tmp_path, config_factory, name, posterior, extra):
    cfg = config_factory(
        **{
            "model.name": name,
            "model.posterior": posterior,
            "model.extra": extra,
            "objective.kl": "mc",
            "train.epochs": 1,
        }
    )
    result = train(cfg, out=tmp_path / "run")
    loaded = load(tmp_path / "run", which="last")
    want = result.model.state_dict()
    got = loaded.state_dict()
    assert got.keys() == want.keys() and any("flow" in k for k in got)
    assert all(torch.equal(got[k], want[k]) for k in got)
    x = (torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()  # digits: 8x8
    result.model.eval()
    with torch.no_grad():
        a = result.model.log_importance_weights(x, 3, torch.Generator().manual_seed(2))
        b = loaded.log_importance_weights(x, 3, torch.Generator().manual_seed(2))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        if name != "hierarchical":
            z = torch.randn(3, 6, 2, generator=torch.Generator().manual_seed(3))
            torch.testing.assert_close(loaded.encode(x).log_prob(z), result.model.encode(x).log_prob(z))


def test_a_flow_trains_with_a_monte_carlo_kl_unless_told(tmp_path):
    """--posterior without --kl: objective.kl=mc is saved with the run (a flow's KL has no closed form)."""
    run = tmp_path / "run"
    assert (
        main(
            ["train", *TINY_TRAIN, "--posterior", "iaf:1", "--epochs", "0", "--no-figures", "--out", str(run)]
        )
        == 0
    )
    saved = json.loads((run / "config.json").read_text())
    assert (saved["model"]["posterior"], saved["objective"]["kl"]) == ("iaf:1", "mc")


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (
            ["--posterior", "planar:0"],
            "model.posterior 'planar:0': K, the number of flow layers, must be an integer >= 1 (planar:K)",
        ),
        (
            ["--posterior", "iaf:x"],
            "model.posterior 'iaf:x': K, the number of flow layers, must be an integer >= 1 (iaf:K[:WIDTH])",
        ),
        (
            ["--posterior", "foo"],
            "unknown model.posterior 'foo'; choose one of: gaussian, planar:K, iaf:K[:WIDTH], sylvester:K",
        ),
        (
            ["--posterior", "planar:2", "--kl", "analytic"],
            "model.posterior planar:2 is a flow: KL(q || p) has no closed form; use objective.kl=mc (--kl mc)",
        ),
        (
            ["--posterior", "planar:2", "--model", "cvae"],
            "model 'cvae' has a Gaussian q(z|x) only: model.posterior planar:2 is for vae, iwae, hierarchical, "
            "vampprior",
        ),
        (
            ["--posterior", "iaf:1", "--model", "iwae", "--dreg"],
            "objective.dreg needs a diagonal Gaussian q(z|x) (log q at stopped parameters); model.posterior iaf:1 "
            "is a flow",
        ),
    ],
)
def test_bad_posterior_settings_are_one_line(tmp_path, capsys, one_line_error, flags, line):
    code = main(["train", *TINY_TRAIN, *flags, "--out", str(tmp_path / "run")])
    assert one_line_error(capsys, code, line).endswith(line)
    assert not (tmp_path / "run").exists()


def test_the_decomposition_of_a_flow_uses_monte_carlo_terms():
    """KL(q || p) and the entropy in the free-energy form are averages of log q - log p and -log q over the same
    draws (no closed form), so ELBO = rec - KL by hand and the two forms agree; active units and I(x; z), defined
    for Gaussian q, are left out."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(hidden=(16,), latent_dim=3, posterior="planar:2"), SHAPE)
    x = binary(7)
    with torch.no_grad():
        d = decompose(model, x, num_samples=5, generator=torch.Generator().manual_seed(4))
        q = model.encode(x)
        z = rsample(q, (5,), torch.Generator().manual_seed(4))
        rec = model.decode(z).log_prob(x).mean(0)
        kl = (q.log_prob(z) - model.prior().log_prob(z)).mean(0)
    assert d["rec"] == pytest.approx(float(rec.double().mean()), abs=1e-5)
    assert d["kl"] == pytest.approx(float(kl.double().mean()), abs=1e-5)
    assert d["elbo"] == pytest.approx(d["rec"] - d["kl"], abs=1e-9)
    assert d["forms_difference"] == pytest.approx(0.0, abs=1e-5)
    assert "active_units" not in d and "mutual_information" not in d


def test_the_explorer_encodes_with_the_flows_moments(tmp_path, config_factory):
    """/api/encode answers q's mean and std, a flow's Monte Carlo estimates (the same for the image alone as in
    any batch), and decodes the mean."""
    import warnings

    import numpy as np
    from PIL import Image

    from vaelab.commands.common import open_run
    from vaelab.serve import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's TestClient warns that it prefers httpx2 to httpx
        from fastapi.testclient import TestClient

    cfg = config_factory(**{"model.posterior": "iaf:1:8", "objective.kl": "mc", "train.epochs": 1})
    train(cfg, out=tmp_path / "flow")
    o = open_run(str(tmp_path / "flow"))
    u8 = o.split("test").images[:1].cpu()  # a binarized run's test images are one 0/1 draw
    png = io.BytesIO()
    Image.fromarray((u8[0, 0] * 255).numpy()).save(png, format="PNG")
    r = TestClient(create_app(tmp_path / "flow")).post(
        "/api/encode", data={"run": "flow"}, files={"file": ("d.png", png.getvalue(), "image/png")}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    with torch.no_grad():
        q = o.model.encode(o.split("test").images[:5].float())
        mean, std = q.mean[0].numpy(), q.stddev[0].numpy()
        base = o.model.base_posterior(u8.float()).mean[0].numpy()
    assert np.allclose(body["mean"], mean, atol=1e-5)
    assert np.allclose(body["std"], std, atol=1e-5)
    assert not np.allclose(body["mean"], base, atol=1e-3)  # the flow moved it
