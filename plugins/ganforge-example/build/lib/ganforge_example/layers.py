"""CoordConv (Liu et al. 2018, "An intriguing failing of convolutional neural networks
and the CoordConv solution"): give a convolution access to where it is in the image."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _axis(n: int, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``n`` evenly spaced points from -1 to 1; a single point sits at the centre, 0."""
    if n == 1:
        return torch.zeros(1, device=device, dtype=dtype)
    return torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)


def coordinate_channels(
    batch: int,
    height: int,
    width: int,
    *,
    with_radius: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The coordinate channels CoordConv appends, shape ``(batch, 2 or 3, height, width)``.

    Channel 0 is x (varies along the width: -1 at the left column, +1 at the right),
    channel 1 is y (varies along the height: -1 at the top row, +1 at the bottom).
    With ``with_radius`` a third channel holds the distance from the image centre,
    ``sqrt(x**2 + y**2) / sqrt(2)``, so it runs from 0 at the centre to 1 at the corners.
    """
    dtype = dtype if dtype is not None else torch.get_default_dtype()
    ys = _axis(height, device=device, dtype=dtype).view(height, 1).expand(height, width)
    xs = _axis(width, device=device, dtype=dtype).view(1, width).expand(height, width)
    planes = [xs, ys]
    if with_radius:
        planes.append(torch.sqrt(xs * xs + ys * ys) / math.sqrt(2.0))
    return torch.stack(planes, dim=0).unsqueeze(0).expand(batch, len(planes), height, width)


class CoordConv(nn.Module):
    """Convolution over the input plus normalised x/y coordinate channels (CoordConv, Liu et al. 2018).

    The input image ``(B, C, H, W)`` gets two extra channels holding each pixel's x and y
    coordinate scaled to [-1, 1] (and, with ``with_radius``, a third holding the distance
    from the centre, scaled to [0, 1]); a stride-1 ``kernel_size`` x ``kernel_size``
    convolution with "same" padding then maps the ``C + 2`` (or ``C + 3``) channels to
    ``channels``. Output: ``(B, channels, H, W)``.

    Settings:
        channels: output channels.
        kernel_size: side of the square convolution kernel (>= 1; even sizes pad asymmetrically).
        with_radius: also append the radial-distance channel.
    """

    def __init__(
        self,
        *,
        channels: int = 64,
        kernel_size: int = 3,
        with_radius: bool = False,
        in_channels: int,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.with_radius = with_radius
        self.in_channels = in_channels
        extra = 3 if with_radius else 2
        # "Same" padding by hand: odd kernels pad symmetrically inside the conv; even ones pad
        # one less on the left/top (as torch's padding="same" does, without its copy warning).
        low, high = (kernel_size - 1) // 2, kernel_size // 2
        self._pad = None if low == high else (low, high, low, high)
        self.conv = nn.Conv2d(in_channels + extra, channels, kernel_size, padding=low if low == high else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"CoordConv expects an image batch (B, C, H, W), got shape {tuple(x.shape)}")
        batch, _, height, width = x.shape
        coords = coordinate_channels(
            batch, height, width, with_radius=self.with_radius, device=x.device, dtype=x.dtype
        )
        features = torch.cat([x, coords], dim=1)
        if self._pad is not None:
            features = F.pad(features, self._pad)
        return self.conv(features)

    def extra_repr(self) -> str:
        return f"with_radius={self.with_radius}"
