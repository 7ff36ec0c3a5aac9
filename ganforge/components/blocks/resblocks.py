"""Residual up-/down-sampling blocks of the SNGAN/SAGAN generator and discriminator."""

from __future__ import annotations

from typing import Annotated

import pydantic
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.components.layers.norms import Momentum, make_batch_norm
from ganforge.components.layers.spectral_norm import Channels, SNEps, SNIterations, apply_spectral_norm
from ganforge.registry import register

__all__ = ["DownResBlock", "LeakySlope", "UpResBlock"]

# Negative slope of a leaky ReLU; 0 means a plain ReLU (the official SAGAN/SNGAN blocks).
LeakySlope = Annotated[float, pydantic.Field(ge=0, lt=1)]


def _conv(cin: int, cout: int, kernel_size: int, sn: dict) -> nn.Conv2d:
    return apply_spectral_norm(nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2), **sn)


@register("block", "up_resblock")
class UpResBlock(nn.Module):
    """Generator residual block: (C)BN→ReLU→2× up→3×3 conv→(C)BN→ReLU→3×3 conv, plus shortcut.

    The official SAGAN generator block (github brain-research/self-attention-gan at ad9612e,
    ``generator.py:78-92``). The shortcut is nearest 2× up-sampling → 1×1 conv (as in the
    official code, also when channels do not change, ``generator.py:89-90``); with ``upsample=False``
    and unchanged channels it is the identity. Batch norms are class-conditional
    (per-class gain/bias, fed the labels) when ``conditional`` and the model has classes.
    ``bn_momentum`` is torch's momentum of both batch norms' running statistics (the official
    SAGAN-128 code keeps them with decay 0.999, i.e. momentum 0.001: ``ops.py:310``).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int = 0,
        channels: Channels = 64,
        upsample: bool = True,
        conditional: bool = True,
        bn_momentum: Momentum = 0.1,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        sn = dict(spectral_norm=spectral_norm, sn_eps=sn_eps, sn_iterations=sn_iterations)
        bn = dict(num_classes=num_classes, conditional=conditional, momentum=bn_momentum)
        self.upsample = upsample
        self.bn1 = make_batch_norm(in_channels, **bn)
        self.conv1 = _conv(in_channels, channels, 3, sn)
        self.bn2 = make_batch_norm(channels, **bn)
        self.conv2 = _conv(channels, channels, 3, sn)
        learnable = upsample or in_channels != channels
        self.shortcut = _conv(in_channels, channels, 1, sn) if learnable else nn.Identity()

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.bn1(x, labels))
        h = self.conv1(self._up(h))
        h = F.relu(self.bn2(h, labels))
        h = self.conv2(h)
        return h + self.shortcut(self._up(x))


@register("block", "down_resblock")
class DownResBlock(nn.Module):
    """Discriminator residual block: ReLU→3×3 conv→ReLU→3×3 conv→2×2 avg pool, plus shortcut.

    The official SAGAN discriminator block (``discriminator.py:29-62`` of the official code); its
    shortcut is 1×1 conv → avg pool, present only when down-sampling or changing channels
    (identity otherwise, ``:57-61``). ``optimized: true`` is the official first block
    (``optimized_block``, ``:65-93``), applied to images: no leading ReLU, and the shortcut is
    avg pool → 1×1 conv. ``leaky_slope`` > 0 makes every ReLU a leaky ReLU with that negative
    slope (github sthalles/blog-resources ``sagan/celeb/model.py:92`` uses 0.1 in D); 0 is the
    official ReLU. ``hidden_channels`` is the
    width between the two 3×3 convs: ``channels`` when unset (SAGAN); SNGAN-projection's released
    D keeps the input width there (dis_models/resblocks.py: hidden = in_channels).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        in_size: int,
        channels: Channels = 64,
        downsample: bool = True,
        optimized: bool = False,
        hidden_channels: Channels | None = None,
        leaky_slope: LeakySlope = 0.0,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        if downsample and in_size % 2 != 0:
            raise ValueError(
                f"down_resblock halves the resolution with 2×2 average pooling, so the input size must be even, "
                f"got {in_size}×{in_size}; set downsample: false or change the resolution"
            )
        sn = dict(spectral_norm=spectral_norm, sn_eps=sn_eps, sn_iterations=sn_iterations)
        self.downsample = downsample
        self.optimized = optimized
        self.leaky_slope = leaky_slope
        hidden = channels if hidden_channels is None else hidden_channels
        self.conv1 = _conv(in_channels, hidden, 3, sn)
        self.conv2 = _conv(hidden, channels, 3, sn)
        learnable = optimized or downsample or in_channels != channels
        self.shortcut = _conv(in_channels, channels, 1, sn) if learnable else nn.Identity()

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.leaky_slope) if self.leaky_slope else F.relu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.optimized else self._act(x)
        h = self.conv2(self._act(self.conv1(h)))
        h = self._down(h)
        if self.optimized:
            skip = self.shortcut(self._down(x))
        else:
            skip = self._down(self.shortcut(x))
        return h + skip
