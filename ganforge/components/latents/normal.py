"""The standard normal latent, with StyleGAN's optional second latent for style mixing."""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field

from ganforge.registry import register

Probability = Annotated[float, Field(ge=0, le=1)]


@register("latent", "normal")
class NormalLatent:
    """z ~ N(0, I) per image; with ``mixing`` > 0 also ``mix_z`` and ``mix_cutoff`` for style mixing.

    ``mix_cutoff`` is one value for the whole batch (stylegan2-ada-pytorch draws one cutoff per
    batch, ``training/loss.py``, ``run_G``): u ~ U[0, 1) with probability ``mixing``, else 1.0,
    meaning "no mixing"; the mapping network turns it into a layer index. Drawn from the engine's
    generator, so a resumed run draws the same.
    """

    def __init__(self, *, latent_dim: int, mixing: Probability = 0.0) -> None:
        self.latent_dim, self.mixing = latent_dim, mixing

    def draw(self, n: int, *, generator: torch.Generator | None, device: Any) -> dict[str, torch.Tensor]:
        z = torch.randn(n, self.latent_dim, device=device, generator=generator)
        if self.mixing <= 0:
            return {"z": z}
        mix_z = torch.randn(n, self.latent_dim, device=device, generator=generator)
        u = torch.rand(2, device=device, generator=generator)
        cutoff = torch.where(u[0] < self.mixing, u[1], torch.ones_like(u[1]))
        return {"z": z, "mix_z": mix_z, "mix_cutoff": cutoff.expand(n)}

    def sample(self, n: int, *, generator: torch.Generator, truncation: float | None = None) -> torch.Tensor:
        """z for sampling (on the CPU): with ``truncation`` T each entry is redrawn until |z| ≤ T (BigGAN's trick)."""
        z = torch.empty(n, self.latent_dim)
        if truncation is None:
            z.normal_(generator=generator)
        else:
            torch.nn.init.trunc_normal_(z, mean=0.0, std=1.0, a=-truncation, b=truncation, generator=generator)
        return z

    def __repr__(self) -> str:
        return f"NormalLatent(latent_dim={self.latent_dim}, mixing={self.mixing})"
