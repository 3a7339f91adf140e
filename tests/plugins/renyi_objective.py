"""The Renyi bound VR-alpha as a training objective (Li & Turner 2016), registered from outside vaelab.

L_alpha(x) = 1/(1 - alpha) log (1/K) sum_k w_k^(1 - alpha) from any model's K log importance weights: alpha = 0
is the IWAE bound, alpha -> 1 the ELBO, and alpha = 1/2 lies between them. K = objective.num_samples.
"""

import math

import torch

import vaelab
from vaelab.objectives import Step

ALPHA = 0.5


@vaelab.register_objective("renyi")
def renyi_objective(model, x, cfg, beta, generator, *, y=None) -> Step:
    """-L_alpha averaged over the batch (beta does not apply); reports L_alpha and the ELBO of the same draws."""
    log_w = model.log_importance_weights(x, cfg.num_samples, generator)
    bound = (torch.logsumexp((1 - ALPHA) * log_w, dim=0) - math.log(log_w.shape[0])) / (1 - ALPHA)
    return Step(-bound.mean(), {"renyi": bound, "elbo": log_w.mean(0)})


# The VAE class trained with it, as `iwae` is the VAE trained with the IWAE bound.
vaelab.register_model(
    "renyi-vae",
    vaelab.VAE,
    objective="renyi",
    description="VAE trained with the Renyi bound, alpha = 1/2 (Li & Turner 2016; a plugin)",
    defaults={"objective.num_samples": 5},
)
