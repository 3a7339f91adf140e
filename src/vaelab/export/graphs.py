"""The encoder and decoder as graphs of tensors, read from the model contract (`vaelab.models.protocol`).

A model's `encode(x)` and `decode(z)` return `torch.distributions` objects; a graph cannot. `DistributionParams`
runs the part and returns the parameters the distribution was built from, in the order its class names them in
`arg_constraints` (a Normal's loc and scale, a Bernoulli's logits, a discretized logistic's loc and log_scale),
after unwrapping `Independent`. What goes in and what cannot be exported is asked of `capabilities(model)`,
never of the model's class: a labelled model takes its label y as a second input; a model with several latent
layers, or no latent code at all, gets a one-line reason instead of a graph. A flow posterior (`model.posterior`)
is not a set of parameters: its encoder graph (`FlowDraw`) takes standard-normal noise eps beside x and gives
the draw z and its log q(z|x).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal, TransformedDistribution
from torch.distributions.utils import lazy_property

from vaelab.distributions.flows import reparameterise_with_log_prob
from vaelab.models.protocol import Capabilities, capabilities

PARTS = ("encoder", "decoder")
TRACE_BATCH = 3  # the batch the graphs are traced at: not 0 or 1, which torch.export would specialise on


def distribution_params(dist: Distribution) -> dict[str, torch.Tensor]:
    """The tensors a distribution was built from, by their `arg_constraints` names (Independent unwrapped).

    Only the parameters it was built from count: a Bernoulli made from logits gives its logits, not the probs
    that torch computes from them on first access (a `lazy_property`; the one given is its `_param`).

    Args:
        dist: what `encode` or `decode` returned.
    """
    base = dist
    while isinstance(base, Independent):
        base = base.base_dist
    names = getattr(type(base), "arg_constraints", {}) or {}
    own = vars(base)

    def given(name: str) -> bool:
        value = own.get(name)
        if not isinstance(value, torch.Tensor):
            return False
        return not isinstance(getattr(type(base), name, None), lazy_property) or value is own.get("_param")

    return {n: own[n] for n in names if given(n)}


def describe(dist: Distribution) -> str:
    """A distribution's structure in words, e.g. `Independent(Normal(loc, scale), 1)`.

    Args:
        dist: what `encode` or `decode` returned.
    """
    if isinstance(dist, Independent):
        return f"Independent({describe(dist.base_dist)}, {dist.reinterpreted_batch_ndims})"
    return f"{type(dist).__name__}({', '.join(distribution_params(dist))})"


class DistributionParams(nn.Module):
    """`model.<method>(*inputs)`'s distribution parameters as a tuple of tensors: a graph's forward."""

    def __init__(self, model: nn.Module, method: str, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.method, self.names = model, method, names

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        params = distribution_params(getattr(self.model, self.method)(*inputs))
        return tuple(params[n] for n in self.names)


class FlowDraw(nn.Module):
    """A flow posterior's draw as a graph: x (and y), then noise eps [n, D] ~ N(0, I) in; z = T(loc + scale * eps)
    and log q(z|x) out, the density carried along the layers' log|det J| (no inverse: a planar layer has none in
    closed form)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *data, eps = inputs
        return reparameterise_with_log_prob(self.model.encode(*data), eps)


@dataclass(frozen=True)
class Graph:
    """One part to export: its module, input and output names, what its outputs parameterise, and inputs
    for a batch of any size (`example(n)`)."""

    part: str
    module: DistributionParams | FlowDraw
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    distribution: str
    example: Callable[[int], tuple[torch.Tensor, ...]]

    def shapes(self) -> dict[str, dict[str, list[int | str]]]:
        """Input and output shapes with the batch dimension named "batch" (for export.json)."""
        with torch.no_grad():
            ins = self.example(TRACE_BATCH)
            outs = self.module(*ins)

        def named(t: torch.Tensor) -> list[int | str]:
            return ["batch", *t.shape[1:]]

        return {
            "inputs": {n: named(t) for n, t in zip(self.inputs, ins)},
            "outputs": {n: named(t) for n, t in zip(self.outputs, outs)},
        }


def _inputs(
    caps: Capabilities, part: str, shape: tuple[int, int, int]
) -> tuple[tuple[str, ...], Callable[[int], tuple[torch.Tensor, ...]]]:
    """The input names of a part and a maker of example inputs: x [n, C, H, W] in [0, 1] or z [n, D] from
    N(0, I), then labels y [n] (int64) when the part takes one."""
    labelled = caps.label_for_encode is not None if part == "encoder" else caps.labelled
    classes = caps.num_classes or 1
    dim = caps.latent_dim or 1

    def example(n: int) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(n)
        first = torch.rand(n, *shape, generator=g) if part == "encoder" else torch.randn(n, dim, generator=g)
        return (first, torch.arange(n) % classes) if labelled else (first,)

    first = "x" if part == "encoder" else "z"
    return ((first, "y") if labelled else (first,)), example


def why_not(part: str, caps: Capabilities, name: str) -> str | None:
    """Why `part` of a model cannot be exported, in one sentence, or None when it can.

    Args:
        part: "encoder" or "decoder".
        caps: the model's capabilities.
        name: the model's name (its config's model.name), for the sentence.
    """
    if (caps.encode if part == "encoder" else caps.decode) and caps.latent_dim is not None:
        return None
    if caps.own_latent_terms:
        return (
            f"{name} has several latent layers, which it scores itself (latent_terms): there is no single "
            f"{'q(z|x)' if part == 'encoder' else 'p(x|z)'} to export"
        )
    if not (caps.encode or caps.decode or caps.prior):
        how = []
        if caps.exact_likelihood:
            how.append("its log p(x) is exact, by the chain rule over pixels")
        if caps.sampler:
            how.append("its sampling draws one pixel at a time, a loop of random draws rather than a graph")
        return f"{name} has no latent code to encode or decode" + (f" ({'; '.join(how)})" if how else "")
    if part == "encoder":
        return f"{name} has no encoder: no q(z|x) (encode) in its contract"
    return f"{name} has no decoder: no p(x|z) (decode) in its contract"


def plan(
    model: nn.Module, shape: tuple[int, int, int], parts: tuple[str, ...], name: str
) -> tuple[list[Graph], dict[str, str], list[str]]:
    """The graphs of `parts` a model can give, why the others cannot be given, and notes on what is left out.

    Args:
        model: the model, on the CPU, in eval mode.
        shape: one datum's shape (C, H, W).
        parts: a subset of PARTS.
        name: the model's name, for the sentences.
    """
    caps = capabilities(model)
    graphs, refused, notes = [], {}, []
    for part in parts:
        reason = why_not(part, caps, name)
        if reason is not None:
            refused[part] = reason
            continue
        method = "encode" if part == "encoder" else "decode"
        inputs, example = _inputs(caps, part, shape)
        with torch.no_grad():
            dist = getattr(model, method)(*example(TRACE_BATCH))
        if part == "encoder" and is_flow(dist):
            graphs.append(_flow_graph(model, dist, inputs, example))
            continue
        params = distribution_params(dist)
        if not params:
            refused[part] = (
                f"{name}'s {method} returns a {type(dist).__name__} whose parameters are not named "
                "(arg_constraints), so they cannot be graph outputs"
            )
            continue
        module = DistributionParams(model, method, tuple(params)).eval()
        graphs.append(Graph(part, module, inputs, tuple(params), describe(dist), example))
    if caps.class_terms and "encoder" in [g.part for g in graphs]:
        notes.append(
            f"{name} marginalises its label in the bound (class_terms): the encoder graph is q(z|x,y) with y an "
            "input; the sum over labels and the classifier q(y|x) are not exported"
        )
    return graphs, refused, notes


def is_flow(dist: Distribution) -> bool:
    """Whether `dist` is a flow posterior FlowDraw can export: transforms over an Independent(Normal, 1)."""
    return (
        isinstance(dist, TransformedDistribution)
        and isinstance(dist.base_dist, Independent)
        and isinstance(dist.base_dist.base_dist, Normal)
        and dist.base_dist.reinterpreted_batch_ndims == 1
    )


def _flow_graph(
    model: nn.Module,
    q: TransformedDistribution,
    inputs: tuple[str, ...],
    example: Callable[[int], tuple[torch.Tensor, ...]],
) -> Graph:
    """The encoder graph of a flow posterior: `FlowDraw`, with eps an input after the data's."""
    dim = q.event_shape[-1]

    def with_noise(n: int) -> tuple[torch.Tensor, ...]:
        return (*example(n), torch.randn(n, dim, generator=torch.Generator().manual_seed(n + 1)))

    layers = ", ".join(type(t).__name__ for t in q.transforms)
    what = f"z = [{layers}](loc + scale * eps) over {describe(q.base_dist)}; log_q = log q(z|x)"
    return Graph("encoder", FlowDraw(model).eval(), (*inputs, "eps"), ("z", "log_q"), what, with_noise)
