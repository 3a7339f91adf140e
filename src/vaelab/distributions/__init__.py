"""Distributions: decoder likelihoods, priors, and generator-driven sampling over torch.distributions."""

from vaelab.distributions.likelihoods import LIKELIHOODS, Likelihood, build_likelihood
from vaelab.distributions.priors import StandardNormalPrior
from vaelab.distributions.sampling import rsample, sample

__all__ = ["LIKELIHOODS", "Likelihood", "StandardNormalPrior", "build_likelihood", "rsample", "sample"]
