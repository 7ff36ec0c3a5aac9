"""Generator stems: turn the latent vector into the first feature map."""

from __future__ import annotations

from typing import Annotated

import pydantic
import torch
from torch import nn

from ganforge.components.layers.spectral_norm import Channels, SNEps, SNIterations, apply_spectral_norm
from ganforge.registry import register

__all__ = ["LinearStem"]


@register("block", "linear_stem")
class LinearStem(nn.Module):
    """Generator stem: linear z → channels×size×size, reshaped to a feature map (SAGAN's first layer).

    The official code uses a spectrally normalised linear layer to 4×4×(16·64) (github
    brain-research/self-attention-gan at ad9612e, ``generator.py:199``; ``spectral_norm: false``
    gives the plain one of github sthalles/blog-resources ``sagan/celeb/model.py:11``).
    """

    def __init__(
        self,
        *,
        in_features: int,
        channels: Channels = 256,
        size: Annotated[int, pydantic.Field(ge=1)] = 4,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.size = size
        self.linear = apply_spectral_norm(
            nn.Linear(in_features, channels * size * size),
            spectral_norm=spectral_norm,
            sn_eps=sn_eps,
            sn_iterations=sn_iterations,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.channels, self.size, self.size)
