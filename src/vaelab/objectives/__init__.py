"""Training objectives and bounds on log p(x), each registered where it is defined (`register_objective`).

The whole table, `OBJECTIVES` (`objective.name`, `vaelab train --objective`):

    elbo            the ELBO, beta-weighted, analytic or Monte Carlo KL, free bits   objectives/elbo.py
    reconstruction  -log p(x | z = f(x)) of a deterministic autoencoder              objectives/elbo.py
    iwae            the IWAE_K bound (Burda et al. 2016), DReG gradients             objectives/iwae.py
    m2              M2's semi-supervised bound (Kingma et al. 2014)                  objectives/semisupervised.py
    wake-sleep      wake phase on log p(x, z), sleep phase on the forward KL          objectives/wake_sleep.py
                    (Hinton et al. 1995)
    reweighted-wake-sleep  K importance-weighted wake draws, wake + sleep q updates   objectives/wake_sleep.py
                    (Bornschein & Bengio 2015)
    mcem            Monte Carlo EM: HMC draws of p(z|x), M-step on log p(x, z)       objectives/mcem.py
    exact-nll       maximum likelihood of an exact density (PixelCNN)                baselines/pixelcnn.py
    gan             the GAN's two non-saturating losses in one scalar                baselines/gan.py

Importing this package imports every module that registers one, so the table is complete; a user's own
objective joins it with `@register_objective("name")`.
"""

from vaelab.objectives.elbo import ElboTerms, elbo_terms, iwae_bound, kl_weight
from vaelab.objectives.iwae import iwae_objective
from vaelab.objectives.mcem import mcem_objective
from vaelab.objectives.registry import OBJECTIVES, Objective, Step, register_objective
from vaelab.objectives.semisupervised import m2_objective
from vaelab.objectives.wake_sleep import reweighted_wake_sleep_objective, wake_sleep_objective

__all__ = [
    "OBJECTIVES",
    "ElboTerms",
    "Objective",
    "Step",
    "elbo_terms",
    "iwae_bound",
    "iwae_objective",
    "kl_weight",
    "m2_objective",
    "mcem_objective",
    "register_objective",
    "reweighted_wake_sleep_objective",
    "wake_sleep_objective",
]

# Each import above registers objectives; the baselines' two come last, so the table's order is the same
# whichever module is imported first. The baselines import vaelab.objectives.registry, which runs this file
# first when they are imported first: `import vaelab.baselines` then finds that package half-built and returns,
# and the baselines register as their own import completes (before any top-level import of vaelab returns).
import vaelab.baselines  # noqa: F401  (registers exact-nll and gan)
