"""ONNX and TorchScript graphs of the encoder and decoder: run back with onnxruntime and torch.jit.load at
several batch sizes (the batch is dynamic), they give the parameters of the model's own q(z|x) and p(x|z) to
1e-5; parts a model does not have are named in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.distributions import (
    AffineTransform,
    Bernoulli,
    ExpTransform,
    Independent,
    LogNormal,
    Normal,
    TransformedDistribution,
)

import vaelab
from vaelab.distributions.flows import reparameterise
from vaelab.errors import VaelabError
from vaelab.export.graphs import FlowDraw, distribution_params, is_flow
from vaelab.export.run import export_run

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

BATCHES = (1, 2, 5, 16)  # the graphs are traced at 3
# kind -> (encoder outputs, decoder outputs) the contract gives: q(z|x)'s and p(x|z)'s parameter names
OUTPUTS = {
    "vae": (("loc", "scale"), ("logits",)),
    "gaussian": (("loc", "scale"), ("loc", "scale")),
    "logistic-conv": (("loc", "scale"), ("loc", "log_scale")),
    "autoencoder": (("loc", "scale"), ("logits",)),
    "cvae": (("loc", "scale"), ("logits",)),
    "m2": (("loc", "scale"), ("logits",)),
    "gan": (None, ("loc", "scale")),
}
FAST = ("vae", "cvae")  # a plain and a labelled model (its ONNX falls back to the TorchScript exporter)


def _inputs(model, part: str, n: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    caps = vaelab.capabilities(model)
    first = (
        torch.rand(n, *model.shape, generator=g)
        if part == "encoder"
        else torch.randn(n, caps.latent_dim, generator=g)
    )
    labelled = caps.label_for_encode is not None if part == "encoder" else caps.labelled
    return (first, torch.randint(0, caps.num_classes, (n,), generator=g)) if labelled else (first,)


def _expected(model, part: str, inputs) -> dict[str, torch.Tensor]:
    """The model's own distribution's parameters, read off the torch Distribution."""
    with torch.no_grad():
        dist = model.encode(*inputs) if part == "encoder" else model.decode(*inputs)
    base = dist
    while isinstance(base, Independent):
        base = base.base_dist
    return {
        name: getattr(base, name) for name in ("loc", "scale", "log_scale", "logits") if name in vars(base)
    }


def _run(fmt: str, path, names, inputs) -> list[np.ndarray]:
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})
    with torch.no_grad():
        return [t.numpy() for t in torch.jit.load(str(path))(*inputs)]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize(
    "kind", [k if k in FAST else pytest.param(k, marks=pytest.mark.slow) for k in OUTPUTS]
)
def test_graphs_reproduce_the_models_distributions_at_any_batch_size(runs, tmp_path, kind, fmt):
    out = tmp_path / "out"
    export_run(runs[kind], out, fmt)
    manifest = json.loads((out / "export.json").read_text())
    model = vaelab.load(runs[kind])
    g = torch.Generator().manual_seed(0)
    for part, want_names in zip(("encoder", "decoder"), OUTPUTS[kind]):
        suffix = ".onnx" if fmt == "onnx" else ".pt"
        if want_names is None:
            assert not (out / f"{part}{suffix}").exists() and part in manifest["not_exported"]
            continue
        info = manifest["graphs"][part]
        assert tuple(info["outputs"]) == want_names, info
        assert all(shape[0] == "batch" for shape in [*info["inputs"].values(), *info["outputs"].values()])
        if fmt == "onnx":  # the batch dimension is symbolic in the file itself
            graph = onnx.load(str(out / info["file"])).graph
            assert all(i.type.tensor_type.shape.dim[0].dim_param for i in [*graph.input, *graph.output])
        for n in BATCHES:
            inputs = _inputs(model, part, n, g)
            want = _expected(model, part, inputs)
            got = _run(fmt, out / info["file"], list(info["inputs"]), inputs)
            assert len(got) == len(want_names)
            for name, arr in zip(want_names, got):
                ref = want[name].numpy()
                assert arr.shape == ref.shape == (n, *ref.shape[1:]), (part, name, n)
                np.testing.assert_allclose(
                    arr, ref, rtol=1e-5, atol=1e-5, err_msg=f"{kind} {part} {name} n={n}"
                )


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize(
    "kind",
    [
        "planar",
        pytest.param("iaf", marks=pytest.mark.slow),
        pytest.param("sylvester", marks=pytest.mark.slow),
    ],
)
def test_a_flow_posteriors_encoder_graph_draws_z_with_its_log_density(runs, tmp_path, kind, fmt):
    """x and eps in, z = T(loc + scale * eps) and log q(z|x) out at any batch size; the density the graph carries
    along the layers equals torch's TransformedDistribution.log_prob at a copy of z, which inverts every layer
    (a planar one by bisection, an IAF step in D passes): two roads to one number."""
    out = tmp_path / "out"
    export_run(runs[kind], out, fmt)
    info = json.loads((out / "export.json").read_text())["graphs"]["encoder"]
    assert list(info["inputs"]) == ["x", "eps"] and list(info["outputs"]) == ["z", "log_q"]
    assert info["outputs"]["log_q"] == ["batch"] and "log q(z|x)" in info["distribution"]
    model = vaelab.load(runs[kind])
    g = torch.Generator().manual_seed(1)
    for n in BATCHES:
        x, eps = torch.rand(n, *model.shape, generator=g), torch.randn(n, 2, generator=g)
        z, log_q = _run(fmt, out / info["file"], ["x", "eps"], (x, eps))
        with torch.no_grad():
            q = model.encode(x)
            want_z = reparameterise(q, eps)
            want_log_q = q.log_prob(want_z.clone())  # a new tensor: no cached inverse
        np.testing.assert_allclose(z, want_z.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(log_q, want_log_q.numpy(), rtol=1e-4, atol=1e-4)
        assert log_q.shape == (n,)


def test_flow_draw_sums_an_elementwise_layers_log_determinant_and_is_flow_asks_for_a_gaussian_base():
    """An elementwise layer (exp) gives log|det J| per coordinate: FlowDraw's log_q is still one number a datum,
    torch's log_prob; a transformed distribution over anything but Independent(Normal, 1) is not a flow to draw."""

    class Encoder(torch.nn.Module):
        def encode(self, x):
            base = Independent(Normal(x, 0.5 + x.abs()), 1)
            return TransformedDistribution(base, [ExpTransform(), AffineTransform(1.0, 2.0)])

    x, eps = torch.randn(4, 3), torch.randn(4, 3)
    z, log_q = FlowDraw(Encoder())(x, eps)
    q = Encoder().encode(x)
    assert log_q.shape == (4,) and is_flow(q)
    torch.testing.assert_close(z, AffineTransform(1.0, 2.0)((x + (0.5 + x.abs()) * eps).exp()))
    torch.testing.assert_close(log_q, q.log_prob(z.clone()), rtol=1e-5, atol=1e-5)
    assert not is_flow(LogNormal(torch.zeros(3), 1.0))  # over a Normal, not Independent(Normal, 1)
    assert not is_flow(Independent(Normal(torch.zeros(3), 1.0), 1))


def test_a_labelled_model_takes_its_label_as_an_input(runs, tmp_path):
    """cvae: the same z decodes to other pictures under other labels, in the graph as in PyTorch."""
    export_run(runs["cvae"], tmp_path / "o", "onnx", part="decoder")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["decoder.onnx", "export.json"]
    session = ort.InferenceSession(str(tmp_path / "o/decoder.onnx"), providers=["CPUExecutionProvider"])
    z = np.zeros((10, 2), np.float32)
    (logits,) = session.run(None, {"z": z, "y": np.arange(10, dtype=np.int64)})
    model = vaelab.load(runs["cvae"])
    want = model.decode(torch.from_numpy(z), torch.arange(10)).base_dist.logits.detach().numpy()
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
    assert np.abs(logits[0] - logits[1]).max() > 1e-3  # the label changes the picture


def test_parts_a_model_lacks_are_named_in_one_line(runs, tmp_path):
    notes: list[str] = []
    res = export_run(runs["gan"], tmp_path / "gan", "torchscript", note=notes.append)
    assert [p.name for p in res.files] == ["decoder.pt", "export.json"]
    assert notes == ["encoder not exported: gan has no encoder: no q(z|x) (encode) in its contract"]
    with pytest.raises(VaelabError, match="nothing to export as onnx: gan has no encoder"):
        export_run(runs["gan"], tmp_path / "gan-enc", "onnx", part="encoder")
    with pytest.raises(
        VaelabError, match=r"^nothing to export as onnx: pixelcnn has no latent code .*one pixel at a time"
    ):
        export_run(runs["pixelcnn"], tmp_path / "px", "onnx")
    with pytest.raises(VaelabError, match="hierarchical has several latent layers"):
        export_run(runs["hierarchical"], tmp_path / "h", "torchscript")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gan"]  # nothing of the refused exports
    notes.clear()
    export_run(runs["m2"], tmp_path / "m2", "torchscript", note=notes.append)
    assert len(notes) == 1 and "sum over labels" in notes[0] and "q(z|x,y) with y an input" in notes[0]


def test_distribution_params_are_what_the_distribution_was_built_from():
    loc, scale = torch.zeros(2, 3), torch.ones(2, 3)
    assert list(distribution_params(Independent(Normal(loc, scale), 1))) == ["loc", "scale"]
    logits = torch.randn(4)
    by_logits = Independent(Bernoulli(logits=logits), 1)
    _ = by_logits.mean  # torch computes probs on first use: still not a parameter it was built from
    assert list(distribution_params(by_logits)) == ["logits"]
    assert distribution_params(by_logits)["logits"] is logits
    assert list(distribution_params(Bernoulli(probs=torch.rand(4)))) == ["probs"]
