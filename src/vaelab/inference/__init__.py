"""Inference on posteriors whose truth is known: HMC and Metropolis-Hastings kernels, the MCMC driver,
variational inference with several families, and the toy models that check them.

Submodules are imported on demand (`from vaelab.inference import hmc`) so that the core stays light.
"""
