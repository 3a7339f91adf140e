"""What the explorer reads off a model's capabilities (a model written outside vaelab, no base class), and the
one table from a failure to its HTTP status."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

from vaelab.errors import CheckpointError, VaelabError
from vaelab.serve.app import STATUS, detail_of, status_of
from vaelab.serve.errors import BadLabel, BadRequest, NotAnImage, NotFinite, TooLarge, Unsupported
from vaelab.serve.explore import explorer_view, pictures
from vaelab.serve.runs import RunNameError, UnknownRun


class GeneratorOnly(nn.Module):
    """p(z) = N(0, I) and a decoder of a 3-d z to a 1x2x2 picture, and nothing else: no encoder."""

    latent_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(3, 4)

    def prior(self) -> Independent:
        return Independent(Normal(torch.zeros(3), torch.ones(3)), 1)

    def decode(self, z: torch.Tensor) -> Independent:
        mean = torch.sigmoid(self.out(z)).unflatten(-1, (1, 2, 2))
        return Independent(Normal(mean, 1.0), 3)


def test_a_model_with_a_prior_and_a_decoder_only_decodes_and_samples_but_cannot_encode():
    view = explorer_view(GeneratorOnly(), "mine")
    assert view.actions() == {
        "decode": True,
        "encode": False,
        "latents": False,
        "sample": True,
        "interpolate": True,
    }
    assert (view.latent_dim, view.classes, view.generative) == (3, None, True)
    reason = "mine has no encoder: it maps z to an image, but has no q(z|x) to encode with"
    assert view.reasons() == {"encode": reason, "latents": reason}
    assert view.as_json()["samples"] == "z ~ p(z), decoded" and view.as_json()["label"] is None
    with pytest.raises(Unsupported, match=f"^{re.escape(reason)}$"):
        view.require("latents")
    view.require("interpolate")  # supported: no error


def test_the_picture_of_z_is_the_decoders_mean_clamped_to_the_unit_interval():
    model = GeneratorOnly()
    z = torch.tensor([[0.5, -1.0, 2.0]])
    with torch.no_grad():
        want = torch.sigmoid(model.out(z)).reshape(1, 1, 2, 2)
    assert torch.equal(pictures(model, z), want)


def test_a_module_with_no_protocol_can_do_nothing_and_says_why():
    view = explorer_view(nn.Linear(2, 2), "plain")
    assert not any(view.actions().values())
    assert view.latent_dim is None and view.as_json()["decoded"] is None
    assert view.reasons()["sample"] == "plain has neither a prior to draw from nor a sampler"
    assert view.reasons()["interpolate"] == view.reasons()["decode"]


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (RunNameError("x"), 422),
        (UnknownRun("x"), 404),  # a VaelabError, but its own entry is nearer in the MRO
        (Unsupported("x"), 409),
        (BadLabel("x"), 422),
        (NotFinite("x"), 422),
        (BadRequest("x"), 422),
        (TooLarge("x"), 413),
        (NotAnImage("x"), 415),
        (VaelabError("x"), 500),
        (CheckpointError("x"), 500),  # not listed: its base class's entry
        (KeyError("x"), 500),  # a bug
    ],
)
def test_each_failure_has_its_status_from_the_one_table(exc, status):
    assert status_of(exc) == status
    assert type(exc) not in STATUS or STATUS[type(exc)] == status


def test_only_server_failures_are_folded_to_one_line():
    assert detail_of(UnknownRun("no run named 'a  b'"), 404) == "no run named 'a  b'"
    assert detail_of(VaelabError("a run\n  that does not load"), 500) == "a run that does not load"
