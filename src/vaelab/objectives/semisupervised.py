"""M2's semi-supervised objective (Kingma et al. 2014, eqs. 6-9), for batches that mix labelled and unlabelled images.

A labelled image (y >= 0) contributes the bound L(x, y) = E_q(z|x,y)[log p(x|y,z) + log p(y) + log p(z) - log q(z|x,y)]
on log p(x, y); an unlabelled one (y = -1) U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)) on log p(x). Since q(y|x)
would otherwise learn only from unlabelled data, the labelled images add alpha * -log q(y|x):
J_alpha / N = mean over data of -L or -U, plus alpha times the mean over labelled data of -log q(y|x)
(the paper's alpha = 0.1 N, for sums over the N images, is alpha = 0.1 here; M2's default is 10, see
`vaelab.models.m2.ALPHA`). Each batch estimates both means: the first over the
batch, the second over the batch's labelled images (the data pipeline repeats the few labelled images so that
most batches hold some: `data.labelled_share`).

The model provides the per-class terms and q(y|.) (`vaelab.models.protocol.ClassTerms`, `LabelTerms`): M2, M1+M2
and the auxiliary model share this objective. Reported per datum: "elbo" = U(x), the bound on log p(x) (labels
unused), with "rec" = E sum_y q(y|.) log p(x|y,.) and "kl" = rec - elbo; in evaluation also "error" = 1 where
argmax of the model's `classify(x)` misses the label.
"""

from __future__ import annotations

import torch
from torch import nn

from vaelab.config import ObjectiveConfig
from vaelab.errors import ConfigError
from vaelab.models.protocol import capabilities
from vaelab.objectives.registry import Step, register_objective


@register_objective("m2")
def m2_objective(
    model: nn.Module,
    x: torch.Tensor,
    cfg: ObjectiveConfig,
    beta: float,
    generator: torch.Generator | None,
    *,
    y: torch.Tensor | None = None,
) -> Step:
    """-J_alpha / N on one batch (beta weights both KL terms, of z and of y); labels -1 mark unlabelled images.

    Args:
        model: a model with per-class terms (`vaelab.models.protocol.ClassTerms`: M2).
        x: the batch [B, C, H, W].
        cfg: the objective's settings (num_samples, kl).
        beta: the KL weight of this step.
        generator: the random stream of the draws.
        y: the labels, -1 for an unlabelled image; None: every image unlabelled.
    """
    if not capabilities(model).class_terms:
        raise ConfigError(
            f"the m2 objective needs a model with per-class terms (M2), got {type(model).__name__}"
        )
    rec, kl, log_q = model.class_terms(x, cfg.num_samples, generator, analytic=cfg.kl == "analytic")
    log_py = model.log_py()
    q = log_q.exp()  # [K or 1, B, C]
    bound = (rec - beta * kl).mean(0) + log_py  # [B, C]: L(x, y) for every y, KL weighted by beta
    unlabelled = (q * (rec - beta * kl + log_py - beta * log_q)).sum(-1).mean(0)  # U(x)
    loss_terms = unlabelled
    penalty = x.new_zeros(())
    if y is not None and model.training:
        known = y >= 0
        yk = y.clamp_min(0)[:, None]
        loss_terms = torch.where(known, bound.gather(1, yk)[:, 0], unlabelled)
        ce = -log_q.mean(0).gather(1, yk)[:, 0]  # -E log q(y|x, .) over the draws
        penalty = model.alpha * (ce * known).sum() / known.sum().clamp_min(1)
    loss = -loss_terms.mean() + penalty
    rec_mean = (q * rec).sum(-1).mean(0)
    elbo = (q * (rec - kl + log_py - log_q)).sum(-1).mean(0)
    stats = {"elbo": elbo, "rec": rec_mean, "kl": rec_mean - elbo}
    if y is not None and not model.training:
        stats["error"] = ((model.classify(x).logits.argmax(-1) != y) & (y >= 0)).to(x.dtype)
    return Step(loss, stats)
