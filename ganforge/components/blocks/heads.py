"""Output heads: the generator's image output and the projection discriminator's logit."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.components.blocks.resblocks import LeakySlope
from ganforge.components.layers.norms import Momentum
from ganforge.components.layers.spectral_norm import Channels, SNEps, SNIterations, apply_spectral_norm
from ganforge.registry import register

__all__ = ["ImageOutput", "ProjectionOutput"]


@register("head", "image_output")
class ImageOutput(nn.Module):
    """Generator output: BN → ReLU → 3×3 conv to image channels → tanh (images in [-1, 1]).

    The official SAGAN generator's last layers (github brain-research/self-attention-gan at
    ad9612e, ``generator.py:213-217``); the batch norm is plain (not conditional).
    ``bn_momentum`` is torch's momentum of its running statistics (the official SAGAN-128
    code keeps this one with decay 0.9999, i.e. momentum 0.0001: ``ops.py:363``).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: Channels = 3,
        bn_momentum: Momentum = 0.1,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels, eps=1e-5, momentum=bn_momentum)
        self.conv = apply_spectral_norm(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            spectral_norm=spectral_norm,
            sn_eps=sn_eps,
            sn_iterations=sn_iterations,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(F.relu(self.bn(x))))


@register("head", "projection_output")
class ProjectionOutput(nn.Module):
    """Discriminator logit: ReLU → sum over positions → linear to 1, plus a class projection.

    The projection discriminator (Miyato & Koyama) as in the official SAGAN code
    (``discriminator.py:197-204`` at ad9612e): with
    ``projection`` and a class-conditional model, adds ⟨embed(label), pooled features⟩ using
    a spectrally normalised class embedding. Output shape (B, 1), raw logits. ``leaky_slope``
    > 0 makes the leading ReLU leaky, to match down-blocks that use one; 0 is the official ReLU.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int = 0,
        projection: bool = True,
        leaky_slope: LeakySlope = 0.0,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        sn = dict(spectral_norm=spectral_norm, sn_eps=sn_eps, sn_iterations=sn_iterations)
        self.linear = apply_spectral_norm(nn.Linear(in_channels, 1), **sn)
        self.num_classes = num_classes
        self.leaky_slope = leaky_slope
        self.embedding = (
            apply_spectral_norm(nn.Embedding(num_classes, in_channels), **sn)
            if projection and num_classes > 0
            else None
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = (F.leaky_relu(x, self.leaky_slope) if self.leaky_slope else F.relu(x)).sum(dim=(2, 3))
        out = self.linear(h)
        if self.embedding is None:
            return out
        if labels is None:
            raise ValueError(
                f"projection_output projects onto {self.num_classes} class embeddings and needs labels; got None"
            )
        return out + (self.embedding(labels) * h).sum(dim=1, keepdim=True)
