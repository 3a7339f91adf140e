"""What the explorer can do with a model, read off its public protocol, and how it does it.

Every model `vaelab train --model NAME` builds can be served, but not every one can do everything:

- one latent layer (vae, iwae, vampprior, linear-gaussian): decode, encode, sample, interpolate;
- an autoencoder: the same, but its "samples" are decoded N(0, I) draws (it has no prior) and it says so;
- label-conditional decoders (cvae, m2: `decode(z, y)`): decode, sample and interpolate at a label y
  (default 0, stated); encode needs the image's label when `encode(x, y)` requires it (cvae), and when it
  is optional (m2) takes the classifier's most probable label, stated;
- two latent layers (hierarchical: `mean_image(h2)`): z is the top layer and its picture holds the lower
  layer at its conditional mean; no encode (q(h2|x) is a mixture over h1), samples are ancestral;
- a generator without an encoder (gan): decode G(z), sample, interpolate; no encode;
- no latent variable (pixelcnn): samples only (drawn pixel by pixel), nothing to decode or encode.

`Abilities` says which of these a model has, with a one-line reason for each it has not; the app refuses
what a run cannot do with 409 and that reason.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vaelab.distributions.sampling import sample as prior_sample

NOT_GENERATIVE = "an autoencoder has no prior: z ~ N(0, I) decoded, not a model sample"
DEFAULT_LABEL = 0


class Unsupported(Exception):
    """A request the run's model cannot answer (the reason is one line): 409."""


class BadLabel(Exception):
    """A label that does not fit the run (missing where required, out of range, or not taken): 422."""


class NotFinite(Exception):
    """The model gave NaN or infinite values where a picture or a posterior should be: nothing to show.

    422 for a picture of a z the client chose (decode, interpolate); 500 for samples and uploads."""


def finite(values: torch.Tensor, what: str) -> torch.Tensor:
    """`values` unchanged when every one is finite; NotFinite naming `what` otherwise (never drawn as 0)."""
    if not bool(torch.isfinite(values).all()):
        raise NotFinite(f"NaN or infinite values in {what}, so there is nothing to show")
    return values


def _takes(method: Any, name: str) -> str | None:
    """'required' or 'optional' when `method` has a parameter `name`, else None."""
    try:
        param = inspect.signature(method).parameters.get(name)
    except (TypeError, ValueError):
        return None
    if param is None:
        return None
    return "required" if param.default is inspect.Parameter.empty else "optional"


@dataclass(frozen=True)
class Abilities:
    """Which explorer actions a model supports, what each gives, and why the missing ones are missing."""

    latent_dim: int | None
    decode: bool
    encode: bool
    sample: bool
    generative: bool
    classes: int | None = None
    label_for_encode: str | None = None
    decoded: str | None = None
    samples: str | None = None
    why_not: dict[str, str] = field(default_factory=dict)

    @property
    def interpolate(self) -> bool:
        """Interpolation is decoding along a path."""
        return self.decode

    def require(self, action: str) -> None:
        """Raise Unsupported with the reason when the model cannot do `action`."""
        if not getattr(self, "encode" if action == "latents" else action):
            raise Unsupported(self.reasons()[action])

    def as_json(self) -> dict[str, Any]:
        """What /api/runs says a run can do."""
        label = None
        if self.classes is not None:
            label = {"classes": self.classes, "default": DEFAULT_LABEL, "encode": self.label_for_encode}
        return {
            "decode": self.decode,
            "encode": self.encode,
            "latents": self.encode,
            "sample": self.sample,
            "interpolate": self.interpolate,
            "latent_dim": self.latent_dim,
            "needs_label": self.classes is not None,
            "label": label,
            "decoded": self.decoded,
            "samples": self.samples,
            "why_not": self.reasons(),
        }

    def reasons(self) -> dict[str, str]:
        """Why each unsupported action is unsupported (interpolate and latents follow decode and encode)."""
        why = dict(self.why_not)
        if "decode" in why:
            why["interpolate"] = why["decode"]
        if "encode" in why:
            why["latents"] = why["encode"]
        return why


def abilities(model: nn.Module, name: str) -> Abilities:
    """What the explorer can do with `model` (a run of model `name`), from the methods it has."""
    has_decode, has_mean_image = hasattr(model, "decode"), hasattr(model, "mean_image")
    has_prior, has_generate = hasattr(model, "prior"), hasattr(model, "generate")
    label_decode = _takes(model.decode, "y") if has_decode else None
    classes = int(model.num_classes) if label_decode and hasattr(model, "num_classes") else None
    label_encode = _takes(model.encode, "y") if hasattr(model, "encode") else None
    decode = has_decode or has_mean_image
    encode = hasattr(model, "encode") and (label_encode != "optional" or hasattr(model, "classify"))
    latent_dim = int(model.latent_dim) if decode and hasattr(model, "latent_dim") else None
    why: dict[str, str] = {}
    if not decode:
        why["decode"] = (
            f"{name} has no latent variable: it models p(x) directly"
            + (", pixel by pixel" if getattr(model, "exact_likelihood", False) else "")
            + ", so there is no z to decode"
        )
    if not encode:
        if not decode:
            why["encode"] = f"{name} has no latent variable, so there is no posterior q(z|x) to show"
        elif has_mean_image:
            why["encode"] = (
                f"{name} has two latent layers: q(h2|x) is a mixture over h1, not one Gaussian, so there is "
                "no single posterior mean and std to show"
            )
        else:
            why["encode"] = f"{name} has no encoder: it maps z to an image, but has no q(z|x) to encode with"
    if has_mean_image:
        decoded = "z is the top latent layer h2: the mean of p(x|h1) at h1 = the mean of p(h1|h2)"
    elif hasattr(model, "describe_observation"):
        decoded = "the generator's image G(z)"
    elif classes is not None:
        decoded = "the mean of p(x|z,y) at label y"
    else:
        decoded = "the mean of p(x|z)" if decode else None
    if has_prior and decode:
        samples = "z ~ p(z), decoded" + (", labels 0, 1, 2, ... in turn unless y is given" if classes else "")
    elif has_generate:
        samples = "ancestral samples of the model" + (
            ", every latent layer drawn (no single z to show)" if decode else ", drawn pixel by pixel (no z)"
        )
    elif decode:
        samples = NOT_GENERATIVE
    else:
        samples = None
    if samples is None:
        why["sample"] = f"{name} has neither a prior to draw from nor a sampler"
    return Abilities(
        latent_dim=latent_dim,
        decode=decode,
        encode=encode,
        sample=samples is not None,
        generative=has_prior or has_generate,
        classes=classes,
        label_for_encode=label_encode if classes is not None else None,
        decoded=decoded,
        samples=samples,
        why_not=why,
    )


def label(ab: Abilities, y: int | None, run: str, device: torch.device) -> torch.Tensor | None:
    """The label tensor for a decode (y, or the default for a labelled run); BadLabel if it does not fit."""
    if ab.classes is None:
        if y is not None:
            raise BadLabel(f"run {run!r} takes no label y: its decoder maps z alone")
        return None
    if y is None:
        y = DEFAULT_LABEL
    if not 0 <= y < ab.classes:
        raise BadLabel(f"y must be a label 0..{ab.classes - 1} for run {run!r}, got {y}")
    return torch.tensor(y, device=device)


@torch.inference_mode()
def pictures(model: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """The decoded picture [N, C, H, W] in [0, 1] of each z [N, D] (at label y for a labelled decoder)."""
    if hasattr(model, "mean_image") and not hasattr(model, "decode"):
        mean = model.mean_image(z)
    else:
        mean = (model.decode(z) if y is None else model.decode(z, y)).mean
    return finite(mean, "the model's picture of z").clamp(0.0, 1.0)


@torch.inference_mode()
def posterior(
    model: nn.Module, ab: Abilities, x: torch.Tensor, y: int | None, run: str
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Mean [D] and std [D] of q(z|x) (or q(z|x,y)) for one image x [1, C, H, W], with how y was chosen."""
    ab.require("encode")
    if ab.classes is None:
        if y is not None:
            raise BadLabel(f"run {run!r} takes no label y: its encoder reads the image alone")
        q = model.encode(x)
        return (*_posterior_of(q), {})
    if y is None:
        if ab.label_for_encode == "required":
            raise BadLabel(f"run {run!r} encodes q(z|x,y): give the image's label y (0..{ab.classes - 1})")
        probs = model.classify(x).probs[0]
        k = int(probs.argmax())
        how = {"y": k, "label_source": f"predicted: argmax q(y|x), probability {float(probs[k]):.3f}"}
    else:
        if not 0 <= y < ab.classes:
            raise BadLabel(f"y must be a label 0..{ab.classes - 1} for run {run!r}, got {y}")
        k, how = y, {"y": y, "label_source": "given"}
    q = model.encode(x, torch.tensor([k], device=x.device))
    return (*_posterior_of(q), how)


def _posterior_of(q: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the first row of q, both finite (else NotFinite)."""
    return finite(q.mean[0], "the posterior mean"), finite(q.stddev[0], "the posterior std")


@torch.inference_mode()
def draws(
    model: nn.Module, ab: Abilities, n: int, seed: int, y: int | None, run: str, device: torch.device
) -> dict[str, Any]:
    """n samples as the run can draw them: {"z" (or None), "y" (or None), "images", "source"}."""
    ab.require("sample")
    g = torch.Generator(device=device).manual_seed(seed)
    labels = None
    if ab.classes is not None:
        labels = (
            torch.arange(n, device=device) % ab.classes if y is None else label(ab, y, run, device).expand(n)
        )
    elif y is not None:
        raise BadLabel(f"run {run!r} takes no label y")
    if hasattr(model, "prior") and ab.decode:
        z = prior_sample(model.prior(), (n,), g)
        images = pictures(model, z, labels)
    elif hasattr(model, "generate"):
        z, images = None, finite(model.generate(n, g), "the model's samples").clamp(0.0, 1.0)
    else:
        z = torch.randn(n, ab.latent_dim, generator=g, device=device)
        images = pictures(model, z)
    return {
        "z": None if z is None else z.tolist(),
        "y": None if labels is None else labels.tolist(),
        "images": images,
        "source": ab.samples,
    }


@torch.inference_mode()
def batch_codes(model: nn.Module, ab: Abilities, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Posterior means [B, D] of a batch: q(z|x), or q(z|x,y) at the images' own labels y."""
    if ab.classes is None:
        return model.encode(x).mean
    return model.encode(x, y).mean
