"""Self-contained baselines with the same checkpoint and evaluation contract as the VAEs (DESIGN.md):
PixelCNN, the explicit tractable density (exact log p(x)), and the GAN, the implicit one (no likelihood)."""

from vaelab.baselines.gan import GAN, gan_objective
from vaelab.baselines.pixelcnn import PixelCNN, exact_nll_objective
from vaelab.objectives.elbo import OBJECTIVES

OBJECTIVES.setdefault("exact-nll", exact_nll_objective)
OBJECTIVES.setdefault("gan", gan_objective)

__all__ = ["GAN", "PixelCNN", "exact_nll_objective", "gan_objective"]
