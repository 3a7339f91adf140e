"""Self-contained baselines with the same checkpoint and evaluation contract as the VAEs (DESIGN.md):
PixelCNN, the explicit tractable density (exact log p(x)), and the GAN, the implicit one (no likelihood).
Each registers its training objective where it is defined (exact-nll, gan)."""

# PixelCNN first: its objective then registers before the GAN's (the order `vaelab.objectives.OBJECTIVES` lists).
from vaelab.baselines.pixelcnn import PixelCNN, exact_nll_objective  # isort: skip
from vaelab.baselines.gan import GAN, gan_objective

__all__ = ["GAN", "PixelCNN", "exact_nll_objective", "gan_objective"]
