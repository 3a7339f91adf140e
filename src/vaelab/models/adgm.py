"""The auxiliary deep generative model (ADGM) of Maaløe, Sønderby, Sønderby & Winther (2016), semi-supervised.

M2's generative model p(y) p(z) p(x | y, z) (p(y) uniform over C classes, p(z) = N(0, I)) gains an auxiliary
a with a Gaussian p(a | x, y, z), which leaves p(x, y) as it was: p(a|x,y,z) integrates to 1. The inference
model is q(a|x) q(y|a,x) q(z|a,x,y): the classifier and q(z|.) see a drawn a, so that q(y, z | x), a mixture
over a, is richer than M2's. The bounds, shared with M2 through `vaelab.objectives.semisupervised`:
L(x, y) = E_q(a|x) q(z|a,x,y)[log p(x|y,z) + log p(y) + log p(z) + log p(a|x,y,z) - log q(a|x) - log q(z|a,x,y)]
and U(x) = E_q(a|x)[sum_y q(y|a,x) (L-terms) + H(q(y|a,x))]. Published: 0.96 +- 0.02% test error with 100
MNIST labels. Every network is an MLP of widths model.hidden on the flattened image (the paper's: two layers of
500 ReLU units, a and z of 100 dimensions each); a network of several inputs sums one linear map per input in
its first layer (`JoinedMLP`), so x passes once per image, a once per draw and y once per class. It meets
`vaelab.models.protocol.ClassTerms`.

Two opt-in settings in model.extra follow the authors' code (docs/semi-supervised-notes.md, "ADGM against the paper");
their defaults build and classify exactly as before:
- `batch_norm` (default false): batch normalisation of every hidden layer's pre-activation, over all the
  rows a network sees (images x draws x classes), as the authors' MNIST script (`batchnorm=True`).
- `classify_samples` (default 0): 0 reads q(y|a,x) at the mean of q(a|x); S > 0 averages the probabilities
  q(y|a_s,x) over S draws a_s ~ q(a|x) from a fixed-seed stream (a deterministic read-out), as the authors'
  test error (100 draws).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, kl_divergence

from vaelab.config import Config, ModelConfig
from vaelab.data.batches import shared_draw
from vaelab.distributions.gaussian import diagonal_gaussian, draw_z
from vaelab.distributions.priors import StandardNormalPrior
from vaelab.errors import ConfigError
from vaelab.models.cvae import labelled_draws, num_classes, one_hot
from vaelab.models.protocol import LabelTerms
from vaelab.models.vae import decode_with, likelihood_from
from vaelab.nets.mlp import GATED, MLPDecoder, activation, mlp

# Weight of -log q(y|a,x) per labelled image against the batch-mean bound (model.extra["alpha"]). The authors'
# code weighs the labelled cross-entropy by 0.1 N / N_l = 60 against the mean unlabelled bound (N = 60,000
# images, N_l = 100 labels); with vaelab's batches, 90% unlabelled (data.labelled_share = 0.1), that is 54.
ALPHA = 54.0
AUX_DIM = 100  # dimensions of a (model.extra["aux_dim"]), the paper's MNIST setting
CLASSIFY_SEED = 0  # the stream of the read-out's draws of a (model.extra["classify_samples"] > 0)
# The model.extra keys the ADGM reads: the registry's extra_keys for "adgm".
ADGM_EXTRA = ("classes", "alpha", "aux_dim", "batch_norm", "classify_samples")


def adgm_options(cfg: ModelConfig) -> tuple[bool, int]:
    """(batch_norm, classify_samples) from model.extra, checked: a ConfigError in one line.

    Args:
        cfg: the model config.
    """
    norm, samples = cfg.extra.get("batch_norm", False), cfg.extra.get("classify_samples", 0)
    if not isinstance(norm, bool):
        raise ConfigError(f"model.extra.batch_norm must be true or false, got {norm!r}")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise ConfigError(
            "model.extra.classify_samples (draws of a averaged by the classifier; 0: the mean of q(a|x)) "
            f"must be an integer >= 0, got {samples!r}"
        )
    if norm and cfg.activation == GATED:
        raise ConfigError("model.extra.batch_norm normalises before an elementwise activation, not 'gated'")
    return norm, samples


def adgm_settings(cfg: ModelConfig) -> tuple[int, float]:
    """(aux_dim, alpha) from model.extra, with the classes and the networks' shape checked: a ConfigError in one
    line.

    Args:
        cfg: the model config.
    """
    aux, alpha = cfg.extra.get("aux_dim", AUX_DIM), cfg.extra.get("alpha", ALPHA)
    if not isinstance(aux, int) or isinstance(aux, bool) or aux < 1:
        raise ConfigError(
            f"model.extra.aux_dim (dimensions of the auxiliary a) must be an integer >= 1, got {aux!r}"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 0:
        raise ConfigError(
            f"model.extra.alpha (weight of the labelled classification loss) must be a number >= 0, got {alpha!r}"
        )
    num_classes(cfg)
    adgm_options(cfg)
    if cfg.body != "mlp":
        raise ConfigError(
            f"model 'adgm' builds dense networks on the flattened image: model.body must be mlp, not {cfg.body!r}"
        )
    if not cfg.hidden:
        raise ConfigError("model 'adgm' needs at least one hidden layer (model.hidden)")
    if cfg.latent_dim < 1:
        raise ConfigError(f"latent_dim must be >= 1, got {cfg.latent_dim}")
    return aux, float(alpha)


def check_adgm(cfg: Config) -> None:
    """The registry's check of a run's settings, before any data is read (`adgm_settings`).

    Args:
        cfg: the run's config.
    """
    adgm_settings(cfg.model)  # model.features is refused by the registry's check (the spec has no features)


class RowBatchNorm(nn.BatchNorm1d):
    """Batch normalisation of features [..., F] over every row of the leading shape (images, draws, classes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


def normed(net: nn.Sequential) -> nn.Sequential:
    """`mlp`'s layers with a `RowBatchNorm` between each hidden linear layer and its activation."""
    layers: list[nn.Module] = []
    for i, layer in enumerate(net):
        layers.append(layer)
        if isinstance(layer, nn.Linear) and i + 1 < len(net):
            layers.append(RowBatchNorm(layer.out_features))
    return nn.Sequential(*layers)


class JoinedMLP(nn.Module):
    """An MLP on several inputs: the first layer is the sum of one linear map per input (the linear map of
    their concatenation), so inputs of broadcastable leading shapes are each mapped once; `norm`: batch
    normalisation before each hidden activation; `float32_out`: the last layer in float32 (logits)."""

    def __init__(
        self,
        widths: Sequence[int],
        hidden: Sequence[int],
        out_features: int,
        act: str,
        norm: bool = False,
        float32_out: bool = False,
    ) -> None:
        super().__init__()
        first = hidden[0] * (2 if act == GATED else 1)
        self.inputs = nn.ModuleList(nn.Linear(w, first, bias=i == 0) for i, w in enumerate(widths))
        self.act = nn.GLU(-1) if act == GATED else activation(act)
        self.rest = mlp(hidden[0], hidden[1:], out_features, act, float32_out)
        if norm:
            self.act = nn.Sequential(RowBatchNorm(first), self.act)
            self.rest = normed(self.rest)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The output [..., out_features] for inputs [..., width_i] of broadcastable leading shapes."""
        h = self.inputs[0](inputs[0])
        for layer, v in zip(self.inputs[1:], inputs[1:], strict=True):
            h = h + layer(v)
        return self.rest(self.act(h))


class ADGM(nn.Module):
    """Maaløe et al. (2016)'s auxiliary model: q(a|x), q(y|a,x), q(z|a,x,y); p(x|y,z), p(a|x,y,z), N(0, I) p(z)."""

    def __init__(self, cfg: ModelConfig, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.aux_dim, self.alpha = adgm_settings(cfg)
        self.batch_norm, self.classify_samples = adgm_options(cfg)
        self.shape = tuple(shape)
        self.latent_dim = cfg.latent_dim
        self.num_classes = c = num_classes(cfg)
        self.importance_cost = c  # decoder passes per importance sample (one per class)
        pixels, a, d, act = math.prod(self.shape), self.aux_dim, cfg.latent_dim, cfg.activation
        norm = self.batch_norm
        self.q_a = mlp(pixels, cfg.hidden, 2 * a, act)  # q(a|x)
        self.q_y = JoinedMLP((pixels, a), cfg.hidden, c, act, norm, float32_out=True)  # q(y|a,x): logits
        self.q_z = JoinedMLP((pixels, a, c), cfg.hidden, 2 * d, act, norm)  # q(z|a,x,y)
        self.p_a = JoinedMLP((pixels, c, d), cfg.hidden, 2 * a, act, norm)  # p(a|x,y,z)
        self.likelihood = likelihood_from(cfg, self.shape)
        self.decoder = MLPDecoder(d + c, tuple(reversed(cfg.hidden)), self.shape, self.likelihood.factor, act)
        if norm:
            self.q_a = normed(self.q_a)
            self.decoder.net = normed(self.decoder.net)
        self.prior_net = StandardNormalPrior(d)

    def prior(self) -> Distribution:
        """p(z) = N(0, I), event shape (D,)."""
        return self.prior_net()

    def log_py(self) -> float:
        """log p(y) of the uniform label prior."""
        return -math.log(self.num_classes)

    def aux(self, x: torch.Tensor) -> Distribution:
        """q(a|x): a diagonal Gaussian, batch (B,), event (aux_dim,).

        Args:
            x: the batch [B, C, H, W].
        """
        return diagonal_gaussian(self.q_a(x.flatten(1)))

    def classify(self, x: torch.Tensor) -> Categorical:
        """q(y | a, x) at a = the mean of q(a|x): batch (B,), deterministic (the plug-in, one pass; training
        fits q(y|a,x) at drawn a, and the test error is read at the mean). With model.extra.classify_samples
        S > 0: the mean of the probabilities q(y|a_s,x) over S draws a_s ~ q(a|x), the draws from a stream
        seeded afresh at every call (`CLASSIFY_SEED`), so the read-out of a batch is deterministic.

        Args:
            x: the batch [B, C, H, W].
        """
        flat, q_a = x.flatten(1), self.aux(x)
        if not self.classify_samples:
            return Categorical(logits=self.q_y(flat, q_a.mean))
        stream = torch.Generator(device=x.device).manual_seed(CLASSIFY_SEED)
        a = draw_z(q_a, self.classify_samples, stream)  # [S, B, A]
        log_q = torch.log_softmax(self.q_y(flat, a).float(), -1)
        return Categorical(logits=log_q.logsumexp(0) - math.log(self.classify_samples))

    def _posterior(self, flat: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> Distribution:
        """q(z|a,x,y) for a [..., A] and labels y broadcast against its leading shape: batch a.shape[:-1]."""
        return diagonal_gaussian(self.q_z(flat, a, one_hot(y, self.num_classes, flat.dtype)))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """q(z | a = the mean of q(a|x), x, y), batch (B,); with y None, every class at once: batch (B, C).

        Args:
            x: the batch [B, C, H, W].
            y: labels [B]; None: every class.
        """
        flat, a = x.flatten(1), self.aux(x).mean
        if y is None:
            return self._posterior(flat[:, None], a[:, None], torch.arange(self.num_classes, device=x.device))
        return self._posterior(flat, a, y)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> Distribution:
        """p(x|y,z): batch z.shape[:-1] (labels broadcast against it), event one datum's shape.

        Args:
            z: latent codes [..., D].
            y: labels broadcastable with z.shape[:-1].
        """
        onehot = one_hot(y, self.num_classes, z.dtype).expand(*z.shape[:-1], -1)
        return decode_with(self.decoder, self.likelihood, torch.cat([z, onehot], -1))

    def class_terms(
        self,
        x: torch.Tensor,
        num_samples: int,
        generator: torch.Generator | None = None,
        analytic: bool = False,
    ) -> LabelTerms:
        """K draws a_k ~ q(a|x), each shared by the classes, then z_ky ~ q(z|a_k,x,y) per class: log p(x|y,z)
        [K, B, C], log q(z|a,x,y) - log p(z) + log q(a|x) - log p(a|x,y,z) [K, B, C] (`analytic`: the z part
        is KL(q(z|a,x,y) || p(z)), the a part stays a draw) and log q(y|a_k,x) [K, B, C].

        Args:
            x: the batch [B, C, H, W].
            num_samples: K, the draws per datum.
            generator: the random stream of the draws (a first, then z); None: torch's global one.
            analytic: the closed-form KL of z given a instead of its one-draw difference.
        """
        flat, q_a = x.flatten(1), self.aux(x)
        a = draw_z(q_a, num_samples, generator)  # [K, B, A]
        log_qy = torch.log_softmax(self.q_y(flat, a), -1)  # [K, B, C]
        eye = torch.eye(self.num_classes, dtype=flat.dtype, device=x.device)
        q_z = diagonal_gaussian(self.q_z(flat[:, None], a[:, :, None], eye))  # batch (K, B, C)
        loc, scale = q_z.base_dist.loc, q_z.base_dist.scale
        z = loc + scale * shared_draw(torch.randn, tuple(loc.shape), generator, loc, dim=1)
        labels = torch.arange(self.num_classes, device=x.device)
        rec = self.decode(z, labels).log_prob(x.unsqueeze(1))
        p_a = diagonal_gaussian(self.p_a(flat[:, None], eye, z))  # batch (K, B, C)
        aux_terms = q_a.log_prob(a)[..., None] - p_a.log_prob(a[:, :, None])
        kl_z = kl_divergence(q_z, self.prior()) if analytic else q_z.log_prob(z) - self.prior().log_prob(z)
        return LabelTerms(rec, kl_z + aux_terms, log_qy)

    def log_importance_weights(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """[K, B] log sum_y p(y) p(x|y,z) p(z) p(a_k|x,y,z) / (q(a_k|x) q(z|a_k,x,y)): each an unbiased estimate
        of p(x), since integrating over a ~ q(a|x) and z ~ q(z|a,x,y) leaves sum_y p(y) p(x|y) (p(a|x,y,z)
        integrates to 1 over a for every z).

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
        return self.likelihood.image(self.decode(z, labels))
