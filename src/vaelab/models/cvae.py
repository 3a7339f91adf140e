"""The conditional VAE (Sohn et al. 2015; Kingma et al. 2014's generative model p(x|y,z)): labels in.

q(z|x,y) reads the image's features and the one-hot label; p(x|z,y) decodes z beside the label; p(z) = N(0, I).
The ELBO and IWAE objectives bound log p(x|y), so training, evaluation and importance sampling need each
image's label (`conditional = True`). Many draws of z for one label show the spread of styles that one
class takes: multi-modal output from one input. Labels are integers 0..C-1, C = model.extra["classes"]
(default 10). It meets `vaelab.models.protocol.Conditional`; q(z|x,y) is the diagonal-Gaussian head of
`vaelab.distributions.gaussian`.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution

from vaelab.config import ModelConfig
from vaelab.distributions.gaussian import diagonal_gaussian
from vaelab.distributions.priors import StandardNormalPrior
from vaelab.distributions.sampling import rsample, sample
from vaelab.errors import ConfigError, DataError
from vaelab.models.vae import decode_with, likelihood_from, make_bodies
from vaelab.nets.mlp import mlp


def num_classes(cfg: ModelConfig) -> int:
    """C, the number of classes the model's labels take (model.extra["classes"], default 10).

    Args:
        cfg: the model config.
    """
    c = cfg.extra.get("classes", 10)
    if not isinstance(c, int) or isinstance(c, bool) or c < 2:
        raise ConfigError(f"model.extra.classes must be an integer >= 2, got {c!r}")
    return c


def one_hot(y: torch.Tensor, classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Labels [...] as one-hot vectors [..., C]; a DataError for labels outside 0..C-1.

    Args:
        y: integer labels.
        classes: C.
        dtype: the one-hot vectors' dtype.
    """
    if y.numel() and bool(((y < 0) | (y >= classes)).any()):
        bad = int(y[(y < 0) | (y >= classes)][0])
        raise DataError(f"label {bad} is outside 0..{classes - 1} (model.extra.classes = {classes})")
    return F.one_hot(y.long(), classes).to(dtype)


def labelled_draws(
    model: nn.Module, n: int, generator: torch.Generator | None, y: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """n draws z ~ p(z) and their labels (y, or 0, 1, 2, ... in turn), on the prior's device: what a labelled
    model's `generate` decodes.

    Args:
        model: a labelled model with `prior()`, `prior_net` and `num_classes`.
        n: how many.
        generator: the random stream of z.
        y: the labels [n]; None: 0, 1, 2, ... in turn.
    """
    device = model.prior_net.loc.device
    labels = torch.arange(n, device=device) % model.num_classes if y is None else y.to(device)
    return sample(model.prior(), (n,), generator), labels


class LabelledBodies(nn.Module):
    """q(z | x, y) and p(x | z, y): an encoder body on x with a head on [features, one-hot y], and a decoder
    body on [z, one-hot y]. Shared by the CVAE and M2."""

    def __init__(self, cfg: ModelConfig, shape: tuple[int, int, int], classes: int) -> None:
        super().__init__()
        if cfg.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {cfg.latent_dim}")
        self.shape, self.classes, self.latent_dim = tuple(shape), classes, cfg.latent_dim
        self.likelihood = likelihood_from(cfg, self.shape)
        wide = dataclasses.replace(cfg, latent_dim=cfg.latent_dim + classes)
        self.encoder, self.decoder = make_bodies(wide, self.shape, self.likelihood.factor)
        width = self.encoder.out_features
        self.head = mlp(width + classes, (width,), 2 * cfg.latent_dim, cfg.activation)

    def posterior(self, features: torch.Tensor, y: torch.Tensor) -> Distribution:
        """q(z|x,y) from the encoder's features [B, F] and labels y [B] or [B or 1, L] (e.g. every class at
        once): batch (B,) or (B, L), event (D,).

        Args:
            features: the encoder body's output [B, F].
            y: labels [B], or [B or 1, L] for L labels per image.
        """
        onehot = one_hot(y, self.classes, features.dtype)
        fshape = (features.shape[0],) + (1,) * (y.dim() - 1)
        lead = torch.broadcast_shapes(onehot.shape[:-1], fshape)
        feats = features.reshape(*fshape, -1).expand(*lead, -1)
        return diagonal_gaussian(self.head(torch.cat([feats, onehot.expand(*lead, -1)], -1)))

    def likelihood_of(self, z: torch.Tensor, y: torch.Tensor) -> Distribution:
        """p(x|z,y): z [..., D], labels broadcastable with z.shape[:-1]; batch z.shape[:-1].

        Args:
            z: latent codes [..., D].
            y: labels broadcastable with z.shape[:-1].
        """
        onehot = one_hot(y, self.classes, z.dtype).expand(*z.shape[:-1], -1)
        return decode_with(self.decoder, self.likelihood, torch.cat([z, onehot], -1))


class CVAE(nn.Module):
    """A conditional VAE: q(z|x,y), p(x|z,y), p(z) = N(0, I); log_importance_weights bounds log p(x|y)."""

    conditional = True

    def __init__(self, cfg: ModelConfig, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.latent_dim = cfg.latent_dim
        self.num_classes = num_classes(cfg)
        self.nets = LabelledBodies(cfg, self.shape, self.num_classes)
        self.prior_net = StandardNormalPrior(cfg.latent_dim)

    def prior(self) -> Distribution:
        """p(z) = N(0, I), event shape (D,)."""
        return self.prior_net()

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> Distribution:
        """q(z|x,y): a diagonal Gaussian, batch (B,), event (D,).

        Args:
            x: the batch [B, C, H, W].
            y: the images' labels [B].
        """
        return self.nets.posterior(self.nets.encoder(x), y)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> Distribution:
        """p(x|z,y): batch z.shape[:-1] (labels broadcast against it), event one datum's shape.

        Args:
            z: latent codes [..., D].
            y: labels broadcastable with z.shape[:-1].
        """
        return self.nets.likelihood_of(z, y)

    def log_importance_weights(
        self,
        x: torch.Tensor,
        num_samples: int,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[K, B] log p(x, z_k | y) - log q(z_k | x, y): importance weights for log p(x|y).

        Args:
            x: the batch [B, C, H, W].
            num_samples: K, the draws per datum.
            generator: the random stream of the draws; None: torch's global one.
            y: the images' labels [B] (required).
        """
        if y is None:
            raise DataError("the conditional VAE bounds log p(x|y): it needs the labels y of the images")
        q = self.encode(x, y)
        z = rsample(q, (num_samples,), generator)
        return self.decode(z, y).log_prob(x) + self.prior().log_prob(z) - q.log_prob(z)

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
