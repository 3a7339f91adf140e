"""The written contract of a model: what `capabilities` reads off every registered model (against a table written
out by hand), off a model written outside vaelab with no base class, `label_kwargs`, and that models do not
import the objectives."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from vaelab.errors import DataError
from vaelab.models.protocol import Capabilities, capabilities, label_kwargs
from vaelab.models.registry import MODELS, build_model, model_config

SHAPE = (1, 28, 28)

# What each registered model is, written out by hand: importance, prior, encode, decode, latent_dim,
# total_latent_dim, num_classes, conditional, classifier, class_terms, exact_likelihood, exact_log_px, sampler,
# own_latent_terms, mean_image, observation, param_groups, importance_cost.
T, F = True, False
EXPECTED = {
    "vae": (T, T, T, T, 20, 20, None, F, F, F, F, F, F, F, F, F, F, 1),
    "autoencoder": (F, F, T, T, 20, 20, None, F, F, F, F, F, F, F, F, F, F, 1),
    "linear-gaussian": (T, T, T, T, 20, 20, None, F, F, F, F, T, F, F, F, F, F, 1),
    "iwae": (T, T, T, T, 20, 20, None, F, F, F, F, F, F, F, F, F, F, 1),
    "hierarchical": (T, F, F, F, 50, 150, None, F, F, F, F, F, T, T, T, F, F, 1),
    "vampprior": (T, T, T, T, 20, 20, None, F, F, F, F, F, F, F, F, F, F, 1),
    "cvae": (T, T, T, T, 2, 2, 10, T, F, F, F, F, T, F, F, F, F, 1),
    "m2": (T, T, T, T, 50, 50, 10, F, T, T, F, F, T, F, F, F, F, 10),
    "adgm": (T, T, T, T, 100, 100, 10, F, T, T, F, F, T, F, F, F, F, 10),
    "pixelcnn": (T, F, F, F, None, None, None, F, F, F, T, T, T, F, F, F, F, 1),
    "gan": (F, T, F, T, 64, 64, None, F, F, F, F, F, T, F, F, T, T, 1),
}

# The derived properties: one_latent_layer, labelled, generative, pictures_z, label_for_encode, latent_figures.
DERIVED = {
    "vae": (T, F, T, T, None, T),
    "autoencoder": (F, F, F, T, None, T),
    "linear-gaussian": (T, F, T, T, None, T),
    "iwae": (T, F, T, T, None, T),
    "hierarchical": (F, F, T, T, None, F),
    "vampprior": (T, F, T, T, None, T),
    "cvae": (T, T, T, T, "required", F),
    "m2": (T, T, T, T, "optional", F),
    "adgm": (T, T, T, T, "optional", F),
    "pixelcnn": (F, F, T, F, None, F),
    "gan": (F, F, T, T, None, F),
}


def built(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(model_config(name).model, SHAPE)


def derived(c: Capabilities) -> tuple:
    return (c.one_latent_layer, c.labelled, c.generative, c.pictures_z, c.label_for_encode, c.latent_figures)


def test_the_table_covers_every_registered_model():
    assert set(EXPECTED) == set(MODELS) == set(DERIVED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_capabilities_of_every_registered_model(name):
    c = capabilities(built(name))
    assert dataclasses.astuple(c) == EXPECTED[name]
    assert derived(c) == DERIVED[name]


class Outside(nn.Module):
    """A model written outside vaelab: just the one-latent-layer methods, no base class, no registration."""

    latent_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 6)

    def prior(self) -> Distribution:
        return Independent(Normal(torch.zeros(3), torch.ones(3)), 1)

    def encode(self, x: torch.Tensor) -> Distribution:
        loc, log_scale = self.net(x.flatten(1)).chunk(2, -1)
        return Independent(Normal(loc, log_scale.exp()), 1)

    def decode(self, z: torch.Tensor) -> Distribution:
        return Independent(Normal(z.sum(-1, keepdim=True).expand(*z.shape[:-1], 4), 1.0), 1)

    def log_importance_weights(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        q = self.encode(x)
        z = q.rsample((num_samples,))
        return self.decode(z).log_prob(x.flatten(1)) + self.prior().log_prob(z) - q.log_prob(z)


def test_a_plain_module_with_the_methods_is_a_one_latent_layer_model():
    c = capabilities(Outside())
    assert c == Capabilities(
        importance=T,
        prior=T,
        encode=T,
        decode=T,
        latent_dim=3,
        total_latent_dim=3,
        num_classes=None,
        conditional=F,
        classifier=F,
        class_terms=F,
        exact_likelihood=F,
        exact_log_px=F,
        sampler=F,
        own_latent_terms=F,
        mean_image=F,
        observation=F,
        param_groups=F,
        importance_cost=1,
    )
    assert derived(c) == (T, F, T, T, None, T)


def test_label_kwargs_carry_labels_only_into_a_conditional_model():
    y = torch.tensor([3, 1])
    assert label_kwargs(built("vae"), y) == {}
    assert label_kwargs(built("m2"), y) == {}  # M2 takes a label but bounds log p(x): none needed
    cvae = built("cvae")
    assert label_kwargs(cvae, y)["y"] is y
    with pytest.raises(DataError, match=r"^CVAE is conditional: it needs the labels y of every image$"):
        label_kwargs(cvae, None)


def test_the_old_name_conditioning_is_label_kwargs():
    from vaelab.objectives.elbo import conditioning

    assert conditioning is label_kwargs


MODEL_FILES = ["vae", "hierarchical", "cvae", "m2", "autoencoder", "linear", "vampprior", "protocol"]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth of its code (`from a import b` counts a and a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("name", MODEL_FILES)
def test_models_do_not_import_the_objectives(name):
    import vaelab.models

    path = Path(vaelab.models.__file__).parent / f"{name}.py"
    found = {
        m for m in imported_modules(path) if m == "vaelab.objectives" or m.startswith("vaelab.objectives.")
    }
    assert found == set(), f"{path.name} imports {sorted(found)}"


def test_a_compiled_step_that_asks_capabilities_compiles_once_while_other_models_come_and_go():
    """torch.compile guards on what the traced code reads: capabilities kept in a global dictionary that shrinks
    when any model is collected made the step recompile (or fail to build a guard, and train eagerly)."""
    import gc

    compiles = []

    def counting(gm, example_inputs):
        compiles.append(gm)
        return gm.forward

    torch.manual_seed(0)
    before = [Outside() for _ in range(20)]  # asked first, collected after the step is compiled
    for o in before:
        capabilities(o)
    model = Outside()
    capabilities(model)

    @torch.compile(backend=counting, fullgraph=True)
    def step(x: torch.Tensor) -> torch.Tensor:
        return model.encode(x).mean.sum() if capabilities(model).encode else x.sum()

    x = torch.randn(2, 4)
    first = step(x)
    del before, o
    gc.collect()
    for _ in range(3):
        others = [Outside() for _ in range(20)]
        for o in others:
            capabilities(o)
        del others, o
        gc.collect()
        torch.testing.assert_close(step(x), first)
    assert len(compiles) == 1
