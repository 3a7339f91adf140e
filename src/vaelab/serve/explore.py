"""What the explorer can do with a model, read off its `capabilities` (models/protocol.py), and how it does it.

Every model `vaelab train --model NAME` builds can be served, but not every one can do everything:

- one latent layer (vae, iwae, vampprior, linear-gaussian): decode, encode, sample, interpolate;
- an autoencoder: the same, but its "samples" are decoded N(0, I) draws (it has no prior) and it says so;
- label-conditional decoders (cvae, m2: `decode(z, y)`): decode, sample and interpolate at a label y
  (default 0, stated); encode needs the image's label when the model is conditional (cvae), and when a
  classifier can supply it (m2) takes the classifier's most probable label, stated;
- two latent layers (hierarchical: `mean_image(h2)`): z is the top layer and its picture holds the lower
  layer at its conditional mean; no encode (q(h2|x) is a mixture over h1), samples are ancestral;
- a generator without an encoder (gan): decode G(z), sample, interpolate; no encode;
- no latent variable (pixelcnn): samples only (drawn pixel by pixel), nothing to decode or encode.

`ExplorerView` is the explorer's reading of a model's `Capabilities`: which actions a run supports, what each
shows, and a one-line reason for each it does not; the app refuses what a run cannot do with 409 and that
reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vaelab.distributions.sampling import sample as prior_sample
from vaelab.models.protocol import Capabilities, capabilities
from vaelab.serve.errors import BadLabel, NotFinite, Unsupported

__all__ = [
    "DEFAULT_LABEL",
    "NOT_GENERATIVE",
    "Abilities",
    "BadLabel",
    "ExplorerView",
    "NotFinite",
    "Unsupported",
    "abilities",
    "batch_codes",
    "draws",
    "explorer_view",
    "finite",
    "label",
    "pictures",
    "posterior",
]

NOT_GENERATIVE = "an autoencoder has no prior: z ~ N(0, I) decoded, not a model sample"
DEFAULT_LABEL = 0


def finite(values: torch.Tensor, what: str) -> torch.Tensor:
    """`values` unchanged when every one is finite; NotFinite naming `what` otherwise (never drawn as 0).

    Args:
        values: what the model gave.
        what: what the values are, for the error.
    """
    if not bool(torch.isfinite(values).all()):
        raise NotFinite(f"NaN or infinite values in {what}, so there is nothing to show")
    return values


@dataclass(frozen=True)
class ExplorerView:
    """The explorer's view of one run's model: which actions it supports (from its `Capabilities`), what
    each gives, and why the missing ones are missing.

    Args:
        caps: what the model can do, from `capabilities(model)`.
        name: the run's model name, for the reasons ("pixelcnn has no latent variable ...").
    """

    caps: Capabilities
    name: str

    @property
    def decode(self) -> bool:
        """A z can be drawn as a picture (decode, or a top-layer picture)."""
        return self.caps.pictures_z

    @property
    def encode(self) -> bool:
        """An image has a posterior q(z|x) to show."""
        return self.caps.encode

    @property
    def interpolate(self) -> bool:
        """Interpolation is decoding along a path."""
        return self.decode

    @property
    def sample(self) -> bool:
        """The run can draw pictures (model samples, or decoded N(0, I) draws for an autoencoder)."""
        return self.samples is not None

    @property
    def generative(self) -> bool:
        """The model draws samples of its own (a prior or an ancestral sampler)."""
        return self.caps.generative

    @property
    def latent_dim(self) -> int | None:
        """D of the z the run decodes (None without a latent variable to decode)."""
        return self.caps.latent_dim if self.decode else None

    @property
    def classes(self) -> int | None:
        """How many labels the decoder takes (None: it takes none)."""
        return self.caps.num_classes

    @property
    def label_for_encode(self) -> str | None:
        """'required' (cvae), 'optional' (m2: the classifier supplies it) or None (no label)."""
        return self.caps.label_for_encode

    @property
    def decoded(self) -> str | None:
        """What the picture of a z is."""
        if self.caps.mean_image:
            return "z is the top latent layer h2: the mean of p(x|h1) at h1 = the mean of p(h1|h2)"
        if self.caps.observation:
            return "the generator's image G(z)"
        if self.classes is not None:
            return "the mean of p(x|z,y) at label y"
        return "the mean of p(x|z)" if self.decode else None

    @property
    def samples(self) -> str | None:
        """Where the run's samples come from (None: it cannot draw any)."""
        if self.caps.prior and self.decode:
            return "z ~ p(z), decoded" + (
                ", labels 0, 1, 2, ... in turn unless y is given" if self.classes else ""
            )
        if self.caps.sampler:
            return "ancestral samples of the model" + (
                ", every latent layer drawn (no single z to show)"
                if self.decode
                else ", drawn pixel by pixel (no z)"
            )
        return NOT_GENERATIVE if self.decode else None

    def actions(self) -> dict[str, bool]:
        """Each explorer action and whether the run supports it (latents follow encode)."""
        return {
            "decode": self.decode,
            "encode": self.encode,
            "latents": self.encode,
            "sample": self.sample,
            "interpolate": self.interpolate,
        }

    def require(self, action: str) -> None:
        """Raise Unsupported with the reason when the run cannot do `action`.

        Args:
            action: one of decode, encode, latents, sample, interpolate.
        """
        if not self.actions()[action]:
            raise Unsupported(self.reasons()[action])

    def as_json(self) -> dict[str, Any]:
        """What /api/runs says a run can do."""
        label = None
        if self.classes is not None:
            label = {"classes": self.classes, "default": DEFAULT_LABEL, "encode": self.label_for_encode}
        return {
            **self.actions(),
            "latent_dim": self.latent_dim,
            "needs_label": self.classes is not None,
            "label": label,
            "decoded": self.decoded,
            "samples": self.samples,
            "why_not": self.reasons(),
        }

    def reasons(self) -> dict[str, str]:
        """Why each unsupported action is unsupported (interpolate and latents follow decode and encode)."""
        name, why = self.name, {}
        if not self.decode:
            why["decode"] = (
                f"{name} has no latent variable: it models p(x) directly"
                + (", pixel by pixel" if self.caps.exact_likelihood else "")
                + ", so there is no z to decode"
            )
        if not self.encode:
            if not self.decode:
                why["encode"] = f"{name} has no latent variable, so there is no posterior q(z|x) to show"
            elif self.caps.mean_image:
                why["encode"] = (
                    f"{name} has two latent layers: q(h2|x) is a mixture over h1, not one Gaussian, so there "
                    "is no single posterior mean and std to show"
                )
            else:
                why["encode"] = (
                    f"{name} has no encoder: it maps z to an image, but has no q(z|x) to encode with"
                )
        if not self.sample:
            why["sample"] = f"{name} has neither a prior to draw from nor a sampler"
        if "decode" in why:
            why["interpolate"] = why["decode"]
        if "encode" in why:
            why["latents"] = why["encode"]
        return why


Abilities = ExplorerView  # the name it had before Capabilities


def explorer_view(model: nn.Module, name: str) -> ExplorerView:
    """What the explorer can do with `model`, from its capabilities.

    Args:
        model: the run's model.
        name: the run's model name (`vaelab train --model NAME`), for the reasons.
    """
    return ExplorerView(capabilities(model), name)


abilities = explorer_view  # the name it had before Capabilities


def label(view: ExplorerView, y: int | None, run: str, device: torch.device) -> torch.Tensor | None:
    """The label tensor for a decode (y, or the default for a labelled run); BadLabel if it does not fit.

    Args:
        view: what the run can do.
        y: the label the client gave, or None.
        run: the run's name, for the error.
        device: where the model lives.
    """
    if view.classes is None:
        if y is not None:
            raise BadLabel(f"run {run!r} takes no label y: its decoder maps z alone")
        return None
    if y is None:
        y = DEFAULT_LABEL
    if not 0 <= y < view.classes:
        raise BadLabel(f"y must be a label 0..{view.classes - 1} for run {run!r}, got {y}")
    return torch.tensor(y, device=device)


@torch.inference_mode()
def pictures(model: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """The decoded picture [N, C, H, W] in [0, 1] of each z [N, D] (at label y for a labelled decoder).

    Args:
        model: a model that decodes z or draws a top-layer code (`capabilities(model).pictures_z`).
        z: the codes [N, D].
        y: the labels, for a labelled decoder.
    """
    caps = capabilities(model)
    if caps.mean_image and not caps.decode:
        mean = model.mean_image(z)
    else:
        mean = (model.decode(z) if y is None else model.decode(z, y)).mean
    return finite(mean, "the model's picture of z").clamp(0.0, 1.0)


@torch.inference_mode()
def posterior(
    model: nn.Module, view: ExplorerView, x: torch.Tensor, y: int | None, run: str
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Mean [D] and std [D] of q(z|x) (or q(z|x,y)) for one image x [1, C, H, W], with how y was chosen.

    Args:
        model: the run's model.
        view: what the run can do (Unsupported when it cannot encode).
        x: one image as the model's input [1, C, H, W].
        y: the image's label (required for a conditional model; else the classifier's guess is used).
        run: the run's name, for errors.
    """
    view.require("encode")
    if view.classes is None:
        if y is not None:
            raise BadLabel(f"run {run!r} takes no label y: its encoder reads the image alone")
        q = model.encode(x)
        return (*_posterior_of(q), {})
    if y is None:
        if view.label_for_encode == "required":
            raise BadLabel(f"run {run!r} encodes q(z|x,y): give the image's label y (0..{view.classes - 1})")
        probs = model.classify(x).probs[0]
        k = int(probs.argmax())
        how = {"y": k, "label_source": f"predicted: argmax q(y|x), probability {float(probs[k]):.3f}"}
    else:
        if not 0 <= y < view.classes:
            raise BadLabel(f"y must be a label 0..{view.classes - 1} for run {run!r}, got {y}")
        k, how = y, {"y": y, "label_source": "given"}
    q = model.encode(x, torch.tensor([k], device=x.device))
    return (*_posterior_of(q), how)


def _posterior_of(q: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the first row of q, both finite (else NotFinite)."""
    return finite(q.mean[0], "the posterior mean"), finite(q.stddev[0], "the posterior std")


@torch.inference_mode()
def draws(
    model: nn.Module, view: ExplorerView, n: int, seed: int, y: int | None, run: str, device: torch.device
) -> dict[str, Any]:
    """n samples as the run can draw them: {"z" (or None), "y" (or None), "images", "source"}.

    Args:
        model: the run's model.
        view: what the run can do (Unsupported when it cannot sample).
        n: how many samples.
        seed: the seed of the draws.
        y: one label for every sample (labelled runs; default: labels 0, 1, 2, ... in turn).
        run: the run's name, for errors.
        device: where the model lives.
    """
    view.require("sample")
    g = torch.Generator(device=device).manual_seed(seed)
    labels = None
    if view.classes is not None:
        labels = (
            torch.arange(n, device=device) % view.classes
            if y is None
            else label(view, y, run, device).expand(n)
        )
    elif y is not None:
        raise BadLabel(f"run {run!r} takes no label y")
    if view.caps.prior and view.decode:
        z = prior_sample(model.prior(), (n,), g)
        images = pictures(model, z, labels)
    elif view.caps.sampler:
        z, images = None, finite(model.generate(n, g), "the model's samples").clamp(0.0, 1.0)
    else:
        z = torch.randn(n, view.latent_dim, generator=g, device=device)
        images = pictures(model, z)
    return {
        "z": None if z is None else z.tolist(),
        "y": None if labels is None else labels.tolist(),
        "images": images,
        "source": view.samples,
    }


@torch.inference_mode()
def batch_codes(
    model: nn.Module, view: ExplorerView, x: torch.Tensor, y: torch.Tensor | None
) -> torch.Tensor:
    """Posterior means [B, D] of a batch: q(z|x), or q(z|x,y) at the images' own labels y.

    Args:
        model: the run's model (one that encodes).
        view: what the run can do.
        x: a batch of images as the model's input.
        y: the images' labels (used when the decoder takes a label).
    """
    if view.classes is None:
        return model.encode(x).mean
    return model.encode(x, y).mean
