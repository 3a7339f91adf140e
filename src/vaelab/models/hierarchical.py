"""The two-stochastic-layer VAE of the IWAE paper (Burda, Grosse & Salakhutdinov 2016, section 5).

Generative model p(h2) p(h1 | h2) p(x | h1), inference model q(h1 | x) q(h2 | h1), every conditional a
diagonal Gaussian but p(x|h1). The paper's MNIST architecture is 784-200-200-100 / 100-100-50 with tanh:
two deterministic layers of 200 between x and the 100-unit h1, two of 100 between h1 and the 50-unit h2
(`vaelab train --model hierarchical` starts there). Sizes map onto the config as model.hidden (the x <-> h1
layers), model.extra["h1_dim"] (100) and model.extra["h2_hidden"] ([100, 100]), model.latent_dim (h2, 50).

It has no single latent layer (no encode/decode/prior). It meets `vaelab.models.protocol.OwnLatentTerms`: the
ELBO and IWAE objectives ask it for `latent_terms` (with DReG's `stop_q`), evaluation reads
`log_importance_weights`, and pictures come from `generate` (ancestral samples) or, for one top-layer code,
`mean_image(h2)` (h1 held at its conditional mean; what the latent explorer decodes). Every conditional is the
diagonal-Gaussian head of `vaelab.distributions.gaussian`; with model.posterior each q layer is a flow over its
Gaussian (`vaelab.distributions.flows`), read from the features before that layer's head: q(h1|x)'s from the
x -> h1 body, q(h2|h1)'s from the last hidden layer of q(h2|h1)'s MLP.

model.extra["prior"] = "vamp" puts a VampPrior on the top layer (Tomczak & Welling 2018 give the 2-layer
model one): p(h2) = (1/K) sum_k q0(h2 | h1 = mean of q0(h1 | u_k)) over K learned pseudo-inputs u_k
(model.extra["pseudo_inputs"], 500), q0 the layers' Gaussians before any flow. Our q(h2|.) reads h1, not x,
so each component sits at the mean h1 of its pseudo-input: a mixture of Gaussians, normalised, so every bound
and estimate stays exact for the model it defines.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal
from torch.func import functional_call

from vaelab.config import ModelConfig
from vaelab.distributions.flows import build_flow, reparameterise, with_flow
from vaelab.distributions.gaussian import diagonal_gaussian, draw_z, stopped
from vaelab.distributions.priors import DiagonalGaussianMixture, StandardNormalPrior
from vaelab.distributions.sampling import sample
from vaelab.errors import ConfigError
from vaelab.models.protocol import LatentTerms
from vaelab.models.vae import decode_with, likelihood_from, make_bodies
from vaelab.models.vampprior import pseudo_images, pseudo_inputs
from vaelab.nets.mlp import mlp

H1_DIM = 100
H2_HIDDEN = (100, 100)
PRIORS = ("normal", "vamp")

# Every conditional's head: a diagonal Gaussian from [..., 2D] (location, then softplus-scale).
gaussian = diagonal_gaussian


class HierarchicalVAE(nn.Module):
    """x <-> h1 <-> h2: q(h1|x) q(h2|h1) and p(h2) p(h1|h2) p(x|h1)."""

    def __init__(self, cfg: ModelConfig, shape: tuple[int, int, int]) -> None:
        super().__init__()
        h1 = cfg.extra.get("h1_dim", H1_DIM)
        hidden2 = tuple(cfg.extra.get("h2_hidden", H2_HIDDEN))
        if not isinstance(h1, int) or isinstance(h1, bool) or h1 < 1:
            raise ConfigError(f"model.extra.h1_dim must be an integer >= 1, got {h1!r}")
        if cfg.latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be >= 1, got {cfg.latent_dim}")
        if not hidden2 or not all(isinstance(w, int) and w > 0 for w in hidden2):
            raise ConfigError(f"model.extra.h2_hidden must be a list of widths, got {hidden2!r}")
        self.shape = tuple(shape)
        self.latent_dim, self.h1_dim = cfg.latent_dim, h1
        self.total_latent_dim = h1 + cfg.latent_dim
        self.likelihood = likelihood_from(cfg, self.shape)
        encoder, decoder = make_bodies(
            dataclasses.replace(cfg, latent_dim=h1), self.shape, self.likelihood.factor
        )
        self.q1 = nn.Sequential(encoder, nn.Linear(encoder.out_features, 2 * h1))
        self.q2 = mlp(h1, hidden2, 2 * cfg.latent_dim, cfg.activation)
        self.p1 = mlp(cfg.latent_dim, tuple(reversed(hidden2)), 2 * h1, cfg.activation)
        self.decoder = decoder
        self.prior_net = StandardNormalPrior(cfg.latent_dim)
        self.pseudo_inputs = self._pseudo_inputs(cfg.extra)
        # None for gaussian; else a flow over each q layer's Gaussian, read from that layer's features
        self.flow1 = build_flow(cfg.posterior, encoder.out_features, h1)
        self.flow2 = build_flow(cfg.posterior, hidden2[-1], cfg.latent_dim)

    def _pseudo_inputs(self, extra: dict) -> nn.Parameter | None:
        """The VampPrior's K learned images with model.extra.prior = vamp; None for N(0, I)."""
        kind = extra.get("prior", "normal")
        if kind not in PRIORS:
            raise ConfigError(f"model.extra.prior must be one of {', '.join(PRIORS)}, got {kind!r}")
        if kind == "normal":
            if "pseudo_inputs" in extra:
                raise ConfigError("model.extra.pseudo_inputs needs model.extra.prior=vamp")
            return None
        return pseudo_inputs(extra, self.shape)

    def top_prior(self) -> Distribution:
        """p(h2): N(0, I), or the VampPrior's mixture of q0(h2 | mean of q0(h1 | u_k)); event shape (D,)."""
        if self.pseudo_inputs is None:
            return self.prior_net()
        h1 = gaussian(self.q1(pseudo_images(self.pseudo_inputs))).mean
        q2 = gaussian(self.q2(h1)).base_dist
        return DiagonalGaussianMixture(q2.loc, q2.scale)

    def _q1(self, x: torch.Tensor) -> Distribution:
        """q(h1|x): the Gaussian head of the x -> h1 body, or a flow over it."""
        if self.flow1 is None:
            return gaussian(self.q1(x))
        h = self.q1[0](x)
        return with_flow(self.flow1, h, gaussian(self.q1[1](h)))

    def _q2(self, h1: torch.Tensor) -> Distribution:
        """q(h2|h1): the Gaussian head of q(h2|h1)'s MLP, or a flow over it."""
        if self.flow2 is None:
            return gaussian(self.q2(h1))
        h = self.q2[:-1](h1)
        return with_flow(self.flow2, h, gaussian(self.q2[-1](h)))

    def latent_terms(
        self,
        x: torch.Tensor,
        num_samples: int,
        generator: torch.Generator | None = None,
        *,
        x_enc: torch.Tensor | None = None,
        stop_q: bool = False,
    ) -> LatentTerms:
        """K ancestral draws h1 ~ q(h1 | x_enc), h2 ~ q(h2 | h1), scored against x.

        rec = log p(x|h1), kl = log q(h1, h2 | x) - log p(h1, h2), each [K, B]. With `stop_q` the inference
        networks' parameters are detached in log q (not in the draws): the DReG form; the draws returned
        (h1 as used downstream, and h2) are where DReG rescales the gradient, once per path.

        Args:
            x: the batch [B, C, H, W] to score.
            num_samples: K, the draws per datum.
            generator: the random stream of the draws; None: torch's global one.
            x_enc: what q(h1|.) reads (a corrupted x when denoising); None: x.
            stop_q: detach the inference networks' parameters in log q (DReG).
        """
        q1 = self._q1(x if x_enc is None else x_enc)
        h1 = draw_z(q1, num_samples, generator)  # [K, B, H1]
        zero = x.new_zeros(len(x), self.latent_dim)
        eps = draw_z(Independent(Normal(zero, torch.ones_like(zero)), 1), num_samples, generator)
        q2 = self._q2(h1)
        h2 = reparameterise(q2, eps)  # [K, B, H2]
        if stop_q:
            h1_used = h1.view_as(h1)
            frozen = {k: v.detach() for k, v in self.q2.named_parameters()}
            log_q = stopped(q1).log_prob(h1_used) + gaussian(
                functional_call(self.q2, frozen, (h1_used,))
            ).log_prob(h2)
        else:
            h1_used = h1
            log_q = q1.log_prob(h1) + q2.log_prob(h2)
        log_p = self.top_prior().log_prob(h2) + gaussian(self.p1(h2)).log_prob(h1_used)
        rec = decode_with(self.decoder, self.likelihood, h1_used).log_prob(x)
        kl = log_q - log_p
        return LatentTerms(rec, kl, kl[..., None], (h1_used, h2))

    def log_importance_weights(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """[K, B] log p(x, h1_k, h2_k) - log q(h1_k, h2_k | x).

        Args:
            x: the batch [B, C, H, W].
            num_samples: K, the draws per datum.
            generator: the random stream of the draws; None: torch's global one.
        """
        t = self.latent_terms(x, num_samples, generator)
        return t.rec - t.kl

    @torch.no_grad()
    def mean_image(self, h2: torch.Tensor) -> torch.Tensor:
        """The picture of a top-layer code h2 [..., D]: the mean of p(x|h1) at h1 = the mean of p(h1|h2).

        Args:
            h2: top-layer codes [..., D].
        """
        h1 = gaussian(self.p1(h2)).mean
        return self.likelihood.image(decode_with(self.decoder, self.likelihood, h1))

    @torch.no_grad()
    def generate(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images [n, C, H, W] in [0, 1]: decoded means of p(x|h1) for h2 ~ p(h2), h1 ~ p(h1|h2).

        Args:
            n: how many images.
            generator: the random stream of h2, h1.
        """
        h2 = sample(self.top_prior(), (n,), generator)
        h1 = sample(gaussian(self.p1(h2)), (), generator)
        return self.likelihood.image(decode_with(self.decoder, self.likelihood, h1))
