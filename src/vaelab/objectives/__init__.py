"""Training objectives and bounds on log p(x): the ELBO, IWAE (with DReG), and M2's semi-supervised bound."""

from vaelab.objectives.elbo import OBJECTIVES, ElboTerms, Step, elbo_terms, iwae_bound, kl_weight
from vaelab.objectives.iwae import iwae_objective
from vaelab.objectives.semisupervised import m2_objective

OBJECTIVES.setdefault("iwae", iwae_objective)
OBJECTIVES.setdefault("m2", m2_objective)

__all__ = [
    "OBJECTIVES",
    "ElboTerms",
    "Step",
    "elbo_terms",
    "iwae_bound",
    "iwae_objective",
    "kl_weight",
    "m2_objective",
]
