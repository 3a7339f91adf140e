"""M2, the semi-supervised generative model of Kingma, Rezende, Mohamed & Welling (2014).

Generative model p(y) p(z) p(x | y, z) with p(y) uniform over C classes and p(z) = N(0, I); inference model
q(y | x) (a classifier) and q(z | x, y). A labelled image is scored by the bound L(x, y) on log p(x, y), an
unlabelled one by U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)) on log p(x), and the classifier also learns from the
labels directly (alpha * -log q(y|x), `vaelab.objectives.semisupervised`). Test classification error is the
number to compare: published 11.97% for M2 alone with 100 MNIST labels, 3.33% for M1+M2.

log p(x) marginalises the label: every importance sample enumerates the C classes, each with its own
z ~ q(z | x, y), so w = sum_y p(x, y, z_y) / q(z_y | x, y) is an unbiased estimate of p(x) whatever the
classifier says (and costs C decoder passes). It meets `vaelab.models.protocol.ClassTerms`, which the m2
objective asks for.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, kl_divergence

from vaelab.config import ModelConfig
from vaelab.distributions.gaussian import draw_z
from vaelab.distributions.priors import StandardNormalPrior
from vaelab.errors import ConfigError
from vaelab.models.cvae import LabelledBodies, labelled_draws, num_classes
from vaelab.models.protocol import LabelTerms
from vaelab.models.vae import make_bodies
from vaelab.nets.mlp import Float32Linear

# Weight of -log q(y|x), per labelled image, against the batch-mean bound (model.extra["alpha"]). The paper's
# alpha = 0.1 N is 0.1 in these units; 10 trains the better classifier (measured: docs/benchmarks.md).
ALPHA = 10.0


def setting_number(value: object) -> float | None:
    """`value` as a finite float (a number, or a string of one such as YAML's '1e-3'); None if it is not one.

    Args:
        value: a model.extra setting.
    """
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def m2_alpha(cfg: ModelConfig, default: float = ALPHA) -> float:
    """model.extra.alpha, the weight of -log q(y|x): a number >= 0 (a ConfigError in one line otherwise).

    Args:
        cfg: the model config.
        default: the weight when model.extra gives none.
    """
    value = cfg.extra.get("alpha", default)
    alpha = setting_number(value)
    if alpha is None or alpha < 0:
        raise ConfigError(
            f"model.extra.alpha (weight of the labelled classification loss) must be a number >= 0, got {value!r}"
        )
    return alpha


class M2(nn.Module):
    """Kingma et al. (2014)'s M2: q(y|x), q(z|x,y), p(x|y,z), uniform p(y), N(0, I) p(z)."""

    def __init__(self, cfg: ModelConfig, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.latent_dim = cfg.latent_dim
        self.num_classes = num_classes(cfg)
        self.importance_cost = self.num_classes  # decoder passes per importance sample (one per class)
        self.alpha = m2_alpha(cfg)
        self.nets = LabelledBodies(cfg, self.shape, self.num_classes)
        body, _ = make_bodies(cfg, self.shape, 1)
        self.classifier = nn.Sequential(body, Float32Linear(body.out_features, self.num_classes))
        self.prior_net = StandardNormalPrior(cfg.latent_dim)

    def prior(self) -> Distribution:
        """p(z) = N(0, I), event shape (D,)."""
        return self.prior_net()

    def log_py(self) -> float:
        """log p(y) of the uniform label prior."""
        return -math.log(self.num_classes)

    def classify(self, x: torch.Tensor) -> Categorical:
        """q(y|x), batch (B,).

        Args:
            x: the batch [B, C, H, W].
        """
        return Categorical(logits=self.classifier(x))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """q(z|x,y), batch (B,); with y None, every class at once: batch (B, C).

        Args:
            x: the batch [B, C, H, W].
            y: labels [B]; None: every class.
        """
        labels = torch.arange(self.num_classes, device=x.device)[None] if y is None else y
        return self.nets.posterior(self.nets.encoder(x), labels)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> Distribution:
        """p(x|y,z): batch z.shape[:-1] (labels broadcast against it), event one datum's shape.

        Args:
            z: latent codes [..., D].
            y: labels broadcastable with z.shape[:-1].
        """
        return self.nets.likelihood_of(z, y)

    def class_terms(
        self,
        x: torch.Tensor,
        num_samples: int,
        generator: torch.Generator | None = None,
        analytic: bool = False,
    ) -> LabelTerms:
        """For every class y and K draws z ~ q(z|x,y): log p(x|y,z) [K, B, C], log q(z|x,y) - log p(z)
        [K, B, C] (or, `analytic`, KL(q(z|x,y) || p(z)) [1, B, C]) and log q(y|x) [1, B, C].

        Args:
            x: the batch [B, C, H, W].
            num_samples: K, the draws per datum.
            generator: the random stream of the draws; None: torch's global one.
            analytic: return the closed-form KL instead of the K-draw difference.
        """
        q = self.encode(x)
        z = draw_z(q, num_samples, generator)  # [K, B, C, D]
        labels = torch.arange(self.num_classes, device=x.device)
        rec = self.decode(z, labels).log_prob(x.unsqueeze(1))
        kl = kl_divergence(q, self.prior())[None] if analytic else q.log_prob(z) - self.prior().log_prob(z)
        return LabelTerms(rec, kl, torch.log_softmax(self.classifier(x), -1)[None])

    def log_importance_weights(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """[K, B] log sum_y p(x, y, z_ky) / q(z_ky | x, y): importance weights for log p(x), y marginalised.

        Args:
            x: the batch [B, C, H, W].
            num_samples: K, the draws per datum.
            generator: the random stream of the draws; None: torch's global one.
        """
        rec, kl, _ = self.class_terms(x, num_samples, generator)
        return torch.logsumexp(rec - kl, dim=-1) + self.log_py()

    @torch.no_grad()
    def generate(
        self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """n images [n, C, H, W] in [0, 1]: decoded means for z ~ p(z) and labels y (default 0, 1, 2, ...).

        Args:
            n: how many images.
            generator: the random stream of z.
            y: the labels [n] to draw; None: 0, 1, 2, ... in turn.
        """
        z, labels = labelled_draws(self, n, generator, y)
        return self.nets.likelihood.image(self.decode(z, labels))
