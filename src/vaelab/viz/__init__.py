"""Pictures of what a model learned and of how it trained: figures (samples, reconstructions, the manifold,
interpolations, latents), training and evaluation charts, image grids, and the one-page HTML report.

A leaf of the package: it uses only the public protocol and checkpoints. Submodules are imported on demand
(`from vaelab.viz import figures`), so importing this package loads no matplotlib.
"""
