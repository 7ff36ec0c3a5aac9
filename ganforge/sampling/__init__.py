"""Sampling from a generator: latents and class labels by seed, standing statistics, images and grids."""
