"""Latent components (``latent`` kind): what is drawn per generated image, from the engine's seeded generator."""
