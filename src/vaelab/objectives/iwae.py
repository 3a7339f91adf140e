"""The importance-weighted bound as a training objective (Burda et al. 2016), with DReG gradients.

IWAE_K(x) = E[log (1/K) sum_k w_k], w_k = p(x, z_k) / q(z_k | x), z_k ~ q(z|x): a lower bound on log p(x) that
tightens as K grows (K = 1 is the ELBO). With beta != 1 (warm-up, cyclical schedules) the weights are
w_k = p(x|z_k) (p(z_k) / q(z_k|x))^beta.

The plain reparameterised gradient of IWAE_K for the encoder gets noisier relative to its size as K grows
(Rainforth et al. 2018). Doubly reparameterised gradients (DReG, Tucker et al. 2019) remove the score-function
term: with log q evaluated at stopped variational parameters, the encoder gradient is
sum_k wt_k^2 d log w_k / d z_k  d z_k / d phi (wt the normalised weights), while the model's parameters get the
usual sum_k wt_k d log w_k / d theta. Both come out of one backward pass: the surrogate sum_k wt_k log w_k
(wt held fixed) with a hook on every draw z_k that multiplies its gradient by wt_k once more. The value
returned as the loss is -IWAE_K itself, so DReG changes the gradient, never the number. A model with several
latent layers applies the stop-gradient itself (`OwnLatentTerms.latent_terms(..., stop_q=True)`) and returns
every path's draws for the hooks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vaelab.config import ObjectiveConfig
from vaelab.objectives.elbo import free_bits_penalty, iwae_bound, latent_terms
from vaelab.objectives.noise import encoder_input
from vaelab.objectives.registry import Step, register_objective


def _scale_by(weights: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A gradient hook multiplying the gradient of a [K, B, ...] draw by the weights [K, B]."""

    def hook(grad: torch.Tensor) -> torch.Tensor:
        return grad * weights.reshape(*weights.shape, *([1] * (grad.dim() - weights.dim())))

    return hook


@register_objective("iwae")
def iwae_objective(
    model: nn.Module,
    x: torch.Tensor,
    cfg: ObjectiveConfig,
    beta: float,
    generator: torch.Generator | None,
    *,
    y: torch.Tensor | None = None,
) -> Step:
    """-IWAE_K averaged over the batch (K = cfg.num_samples); DReG encoder gradients when cfg.dreg.

    Reports per datum the IWAE_K bound ("iwae"), the ELBO from the same K draws ("elbo") and its parts.

    Args:
        model: the model.
        x: the batch [B, C, H, W].
        cfg: the objective's settings (num_samples = K, dreg, free_bits, noise).
        beta: the KL weight of this step (the weights are p(x|z) (p(z) / q(z|x))^beta).
        generator: the random stream of the draws and the noise.
        y: the labels, for a conditional model.
    """
    dreg = cfg.dreg and torch.is_grad_enabled()
    x_enc = encoder_input(model, x, cfg, generator)
    t = latent_terms(model, x, cfg.num_samples, generator, x_enc=x_enc, y=y, stop_q=dreg)
    log_w = t.rec - beta * t.kl
    bound = iwae_bound(log_w)
    if dreg:
        wt = torch.softmax(log_w.detach(), dim=0)
        for z in t.latents:
            if z.requires_grad:
                z.register_hook(_scale_by(wt))
        surrogate = (wt * log_w).sum(0)
        bound = bound.detach() + surrogate - surrogate.detach()
    loss = -bound.mean()
    if cfg.free_bits > 0:
        loss = loss + free_bits_penalty(model, t.groups.mean(0), cfg.free_bits, beta)
    rec, kl = t.rec.detach(), t.kl.detach()
    return Step(
        loss,
        {"iwae": iwae_bound(rec - kl), "elbo": (rec - kl).mean(0), "rec": rec.mean(0), "kl": kl.mean(0)},
    )
