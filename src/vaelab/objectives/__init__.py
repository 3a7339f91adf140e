"""Training objectives and bounds on log p(x)."""

from vaelab.objectives.elbo import OBJECTIVES, ElboTerms, Step, elbo_terms, iwae_bound, kl_weight

__all__ = ["OBJECTIVES", "ElboTerms", "Step", "elbo_terms", "iwae_bound", "kl_weight"]
