"""Distributions: decoder likelihoods, priors, the diagonal-Gaussian head of amortised inference,
generator-driven sampling over torch.distributions, and `log_mean_exp`."""

from vaelab.distributions.gaussian import MIN_SCALE, diagonal_gaussian, draw_z, factorised, stopped
from vaelab.distributions.likelihoods import LIKELIHOODS, Likelihood, build_likelihood
from vaelab.distributions.logmath import log_mean_exp
from vaelab.distributions.priors import StandardNormalPrior
from vaelab.distributions.sampling import rsample, sample

__all__ = [
    "LIKELIHOODS",
    "MIN_SCALE",
    "Likelihood",
    "StandardNormalPrior",
    "build_likelihood",
    "diagonal_gaussian",
    "draw_z",
    "factorised",
    "log_mean_exp",
    "rsample",
    "sample",
    "stopped",
]
