"""The written contract of a vaelab model: what it can be, as `typing.Protocol` classes, read through one
`capabilities(model)`.

Every latent-variable model is an `nn.Module` with `log_importance_weights(x, K, generator) -> [K, B]`
(DESIGN.md); the ELBO, the IWAE bound and importance-sampled log p(x) all derive from it. Beyond that a model
may be any of the protocols below, and everything outside this file (objectives, evaluation, figures, the
explorer, the command line) asks `capabilities(model)` what it is, never the model's attributes.
A model written outside vaelab needs no base class: it has the methods, and `capabilities` sees them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, runtime_checkable

import torch
from torch.distributions import Categorical, Distribution


class LatentTerms(NamedTuple):
    """K draws of the latents per datum: log p(x|z_k) [K, B], log q(z_k|x) - log p(z_k) [K, B] (so that
    log w_k = rec - kl), the same split into free-bits groups [K, B, G], and the reparameterised draws
    (where DReG rescales the gradient, once per path)."""

    rec: torch.Tensor
    kl: torch.Tensor
    groups: torch.Tensor
    latents: tuple[torch.Tensor, ...]


@runtime_checkable
class LatentVariableModel(Protocol):
    """Importance weights log p(x, z_k) - log q(z_k | x), [K, B]: the ELBO, IWAE and IS all derive from them."""

    def log_importance_weights(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


@runtime_checkable
class HasPrior(Protocol):
    """p(z), a distribution with event shape (D,); `latent_dim` is D."""

    latent_dim: int

    def prior(self) -> Distribution: ...


@runtime_checkable
class Encoder(Protocol):
    """q(z|x): a distribution with batch (B,), event (D,) and `rsample` (a point mass for an autoencoder)."""

    def encode(self, x: torch.Tensor) -> Distribution: ...


@runtime_checkable
class Decoder(Protocol):
    """p(x|z): batch z.shape[:-1], event one datum's shape; its `mean` (through the likelihood) is a picture."""

    latent_dim: int

    def decode(self, z: torch.Tensor) -> Distribution: ...


@runtime_checkable
class OneLatentLayer(HasPrior, Encoder, Decoder, Protocol):
    """prior / encode / decode returning `torch.distributions`: the one-latent-layer VAE family."""


@runtime_checkable
class Labelled(Protocol):
    """Its decoder takes a label: `decode(z, y)` with y in 0..num_classes-1 (CVAE, M2)."""

    num_classes: int


@runtime_checkable
class Conditional(Labelled, Protocol):
    """Its bound is on log p(x|y): `encode(x, y)`, `decode(z, y)` and `log_importance_weights(..., y=)` need
    each image's label (`conditional = True`)."""

    conditional: bool


@runtime_checkable
class Classifier(Labelled, Protocol):
    """q(y|x), a Categorical with batch (B,): the model classifies, and its `encode(x, y=None)` may take the
    classifier's label (M2)."""

    def classify(self, x: torch.Tensor) -> Categorical: ...


class LabelTerms(NamedTuple):
    """K draws per datum and class y for a bound that marginalises the label: rec = log p(x|y,...) [K, B, C],
    kl = log q(latents|x,y) - log p(latents|y) [K, B, C] (or a closed form, [1, B, C]), and the classifier's
    log q(y|x, ...) [K or 1, B, C] (an auxiliary variable drawn per k makes it vary with k). Then
    L(x, y) = E[rec - kl] + log p(y) and U(x) = E[sum_y q(y|.) (rec - kl + log p(y) - log q(y|.))]."""

    rec: torch.Tensor
    kl: torch.Tensor
    log_qy: torch.Tensor


@runtime_checkable
class ClassTerms(Classifier, Protocol):
    """Per-class terms for a bound that marginalises a label (the m2 objective: M2, M1+M2, the auxiliary
    model), with log p(y) and alpha, the weight of the labelled classification loss."""

    alpha: float

    def class_terms(
        self,
        x: torch.Tensor,
        num_samples: int,
        generator: torch.Generator | None = None,
        analytic: bool = False,
    ) -> LabelTerms: ...

    def log_py(self) -> float: ...


@runtime_checkable
class ExactLikelihood(Protocol):
    """log p(x) in closed form or by the chain rule, [B]; `exact_likelihood = True` tells evaluation to report
    it instead of sampling (an autoregressive model). A model with `exact_log_px` but the flag off (probabilistic
    PCA) keeps it for checking bounds."""

    exact_likelihood: bool

    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Sampler(Protocol):
    """Draws n images [n, C, H, W] in [0, 1] itself (ancestral sampling, a generator network)."""

    def generate(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...


@runtime_checkable
class OwnLatentTerms(Protocol):
    """Several latent layers: the model scores K draws of all of them itself (the hierarchical VAE).

    `latent_terms(x, K, generator, x_enc=, stop_q=)`: draws from q(. | x_enc) scored against x; with `stop_q`
    the inference networks' parameters are detached in log q (DReG's stop-gradient), never in the draws.
    `total_latent_dim` counts every layer's units (free bits' budget)."""

    total_latent_dim: int

    def latent_terms(
        self,
        x: torch.Tensor,
        num_samples: int,
        generator: torch.Generator | None = None,
        *,
        x_enc: torch.Tensor | None = None,
        stop_q: bool = False,
    ) -> LatentTerms: ...


@runtime_checkable
class TopLayerPicture(Protocol):
    """The picture of a top-layer code: `mean_image(z)` [..., C, H, W] (the hierarchical VAE's explorer view)."""

    latent_dim: int

    def mean_image(self, z: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ObservationModel(Protocol):
    """A model with no likelihood of its own whose `decode` is a stated observation model (a GAN's generator
    with pixel noise, Wu et al. 2017): evaluation names it."""

    def describe_observation(self) -> str: ...


@runtime_checkable
class ParamGroups(Protocol):
    """The optimiser's parameter groups, when they are not one group of all parameters (a GAN's two players)."""

    def param_groups(self) -> list[dict]: ...


@runtime_checkable
class ImportanceCost(Protocol):
    """Decoder passes per importance sample, when more than one (M2 enumerates its classes)."""

    importance_cost: int


LabelUse = Literal["required", "optional"]


@dataclass(frozen=True)
class Capabilities:
    """What a model can do, read once from the protocols it meets; every caller asks this, not the model."""

    importance: bool  # log_importance_weights: ELBO, IWAE, IS
    prior: bool  # p(z)
    encode: bool  # q(z|x)
    decode: bool  # p(x|z)
    latent_dim: int | None  # D of p(z) / the decoder's z (the top layer of a hierarchical model)
    total_latent_dim: int | None  # every latent unit (free bits' budget)
    num_classes: int | None  # labels a labelled decoder takes
    conditional: bool  # the bound is on log p(x|y): labels needed to encode, decode and score
    classifier: bool  # q(y|x)
    class_terms: bool  # per-class terms for a marginalised label (M2's objective)
    exact_likelihood: bool  # log p(x) exactly: reported instead of IS
    exact_log_px: bool  # has exact_log_px (for checks), reported or not
    sampler: bool  # generate(n): draws pictures itself
    own_latent_terms: bool  # scores its latent layers itself (several layers)
    mean_image: bool  # mean_image(z): a picture of a top-layer code
    observation: bool  # describe_observation(): decode is a stated observation model, not a likelihood
    param_groups: bool  # param_groups(): its own optimiser groups
    importance_cost: int  # decoder passes per importance sample

    @property
    def labelled(self) -> bool:
        """The decoder takes a label y."""
        return self.num_classes is not None

    @property
    def one_latent_layer(self) -> bool:
        """prior, encode and decode: the one-latent-layer protocol."""
        return self.prior and self.encode and self.decode

    @property
    def generative(self) -> bool:
        """It can draw from its model: a prior to decode, or a sampler."""
        return self.prior or self.sampler

    @property
    def pictures_z(self) -> bool:
        """A latent code can be drawn as a picture (decode, or a top-layer picture)."""
        return self.decode or self.mean_image

    @property
    def label_for_encode(self) -> LabelUse | None:
        """How encode takes a label: 'required' (conditional), 'optional' (a classifier supplies it), or None."""
        if self.num_classes is None or not self.encode:
            return None
        return "required" if self.conditional else "optional" if self.classifier else None

    @property
    def latent_figures(self) -> bool:
        """Reconstructions, manifold, interpolations and latents apply: an encoder and decoder of one unlabelled
        z."""
        return self.encode and self.decode and not self.labelled


_ATTR = "_vaelab_capabilities"


def capabilities(model: object) -> Capabilities:
    """What `model` can do, from the protocols it meets (the one place that looks at a model's attributes).

    Read once per model object and kept on the object itself (objectives ask on every step; protocol checks cost
    microseconds). Not in a module-level weak dictionary: torch.compile guards on what a traced function reads,
    and a global dictionary that shrinks whenever any model is collected made compiled steps recompile, or fail to
    build their guards.
    """
    caps = getattr(model, _ATTR, None)
    if isinstance(caps, Capabilities):
        return caps
    caps = _read(model)
    with contextlib.suppress(AttributeError, TypeError):  # __slots__ or a builtin: read each time
        object.__setattr__(model, _ATTR, caps)
    return caps


def _read(model: object) -> Capabilities:
    labelled = isinstance(model, Labelled) and isinstance(model, Decoder)
    exact = isinstance(model, ExactLikelihood)
    own = isinstance(model, OwnLatentTerms)
    latent = model.latent_dim if isinstance(model, (HasPrior, Decoder, TopLayerPicture)) else None
    return Capabilities(
        importance=isinstance(model, LatentVariableModel),
        prior=isinstance(model, HasPrior),
        encode=isinstance(model, Encoder),
        decode=isinstance(model, Decoder),
        latent_dim=None if latent is None else int(latent),
        total_latent_dim=int(model.total_latent_dim) if own else (None if latent is None else int(latent)),
        num_classes=int(model.num_classes) if labelled else None,
        conditional=labelled and isinstance(model, Conditional) and bool(model.conditional),
        classifier=isinstance(model, Classifier),
        class_terms=isinstance(model, ClassTerms),
        exact_likelihood=exact and bool(model.exact_likelihood),
        exact_log_px=callable(getattr(model, "exact_log_px", None)),
        sampler=isinstance(model, Sampler),
        own_latent_terms=own,
        mean_image=isinstance(model, TopLayerPicture),
        observation=isinstance(model, ObservationModel),
        param_groups=isinstance(model, ParamGroups),
        importance_cost=max(1, int(model.importance_cost)) if isinstance(model, ImportanceCost) else 1,
    )


def label_kwargs(model: object, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The keyword arguments that carry labels into a conditional model's encode/decode/weights ({} otherwise)."""
    if not capabilities(model).conditional:
        return {}
    if y is None:
        from vaelab.errors import DataError

        raise DataError(f"{type(model).__name__} is conditional: it needs the labels y of every image")
    return {"y": y}
