"""DCGAN baseline (Radford et al. 2016): transposed-conv generator, strided-conv discriminator.

Spectral normalisation is available on every layer but off by default, as in DCGAN. Every block
with a batch norm takes ``bn_momentum`` (torch's momentum of its running statistics).
"""

from __future__ import annotations

from typing import Annotated

import pydantic
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.components.layers.norms import Momentum
from ganforge.components.layers.spectral_norm import Channels, SNEps, SNIterations, apply_spectral_norm
from ganforge.registry import register

__all__ = ["DCGANDown", "DCGANImageOutput", "DCGANLogit", "DCGANStem", "DCGANUp"]

Slope = Annotated[float, pydantic.Field(ge=0)]


@register("block", "dcgan_stem")
class DCGANStem(nn.Module):
    """DCGAN generator stem: z as a 1×1 map → 4×4 transposed conv → BN → ReLU (a 4×4 map)."""

    def __init__(
        self,
        *,
        in_features: int,
        channels: Channels = 256,
        bn_momentum: Momentum = 0.1,
        spectral_norm: bool = False,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        self.deconv = apply_spectral_norm(
            nn.ConvTranspose2d(in_features, channels, 4, stride=1, padding=0, bias=False),
            spectral_norm=spectral_norm,
            sn_eps=sn_eps,
            sn_iterations=sn_iterations,
        )
        self.bn = nn.BatchNorm2d(channels, momentum=bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.deconv(x[:, :, None, None])))


@register("block", "dcgan_up")
class DCGANUp(nn.Module):
    """DCGAN generator block: 4×4 stride-2 transposed conv (doubles H, W) → BN → ReLU."""

    def __init__(
        self,
        *,
        in_channels: int,
        channels: Channels = 128,
        batch_norm: bool = True,
        bn_momentum: Momentum = 0.1,
        spectral_norm: bool = False,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        self.deconv = apply_spectral_norm(
            nn.ConvTranspose2d(in_channels, channels, 4, stride=2, padding=1, bias=not batch_norm),
            spectral_norm=spectral_norm,
            sn_eps=sn_eps,
            sn_iterations=sn_iterations,
        )
        self.bn = nn.BatchNorm2d(channels, momentum=bn_momentum) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.deconv(x)))


@register("block", "dcgan_down")
class DCGANDown(nn.Module):
    """DCGAN discriminator block: 4×4 stride-2 conv (halves H, W) → optional BN → LeakyReLU(0.2).

    DCGAN leaves batch norm out of the first discriminator layer: set ``batch_norm: false`` there.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        in_size: int,
        channels: Channels = 128,
        batch_norm: bool = True,
        bn_momentum: Momentum = 0.1,
        negative_slope: Slope = 0.2,
        spectral_norm: bool = False,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        if in_size % 2 != 0:
            raise ValueError(f"dcgan_down halves the resolution, so the input size must be even, got {in_size}")
        self.negative_slope = negative_slope
        self.conv = apply_spectral_norm(
            nn.Conv2d(in_channels, channels, 4, stride=2, padding=1, bias=not batch_norm),
            spectral_norm=spectral_norm,
            sn_eps=sn_eps,
            sn_iterations=sn_iterations,
        )
        self.bn = nn.BatchNorm2d(channels, momentum=bn_momentum) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.bn(self.conv(x)), self.negative_slope)


@register("head", "dcgan_image_output")
class DCGANImageOutput(nn.Module):
    """DCGAN generator output: 4×4 stride-2 transposed conv to image channels → tanh.

    Like DCGAN's last layer this *doubles* the resolution (a 32×32 map gives 64×64 images).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: Channels = 3,
        spectral_norm: bool = False,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        self.deconv = apply_spectral_norm(
            nn.ConvTranspose2d(in_channels, channels, 4, stride=2, padding=1),
            spectral_norm=spectral_norm,
            sn_eps=sn_eps,
            sn_iterations=sn_iterations,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.deconv(x))


@register("head", "dcgan_logit")
class DCGANLogit(nn.Module):
    """DCGAN discriminator output: one conv covering the whole remaining map → logit (B, 1).

    No sigmoid: losses take raw logits.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        in_size: int,
        spectral_norm: bool = False,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        if in_size < 1:
            raise ValueError(f"dcgan_logit needs a positive input size, got {in_size}")
        self.conv = apply_spectral_norm(
            nn.Conv2d(in_channels, 1, in_size, stride=1, padding=0),
            spectral_norm=spectral_norm,
            sn_eps=sn_eps,
            sn_iterations=sn_iterations,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(1)
