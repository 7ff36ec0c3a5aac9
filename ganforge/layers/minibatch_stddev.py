"""Minibatch standard deviation (Karras et al. 2018, ProGAN §3): let D see a batch's diversity.

A discriminator that scores images one at a time cannot tell a generator that draws one image
per class from one that draws them all; it can only push the favoured image away, and G hops to
another. Appending the batch's spread as a feature map lets D reject copies directly.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from ganforge.registry import register

__all__ = ["MinibatchStdDev"]


@register("layer", "minibatch_stddev")
class MinibatchStdDev(nn.Module):
    """Appends ``num_channels`` maps holding the standard deviation across groups of ``group_size`` images.

    Within each group (a batch not divisible by ``group_size`` uses the largest divisor that
    fits, as in the official ProGAN/StyleGAN code) the per-feature standard deviation over the
    group's images is averaged over channels (split in ``num_channels`` slices) and positions,
    and broadcast as constant maps to every image of the group. Output: C + ``num_channels`` channels.
    """

    batch_dependent = True  # the engine then never mixes real and generated images in one pass

    def __init__(self, *, in_channels: int, group_size: Annotated[int, Field(ge=2)] = 4,
                 num_channels: Annotated[int, Field(ge=1)] = 1, eps: Annotated[float, Field(gt=0)] = 1e-8) -> None:
        super().__init__()
        if in_channels % num_channels:
            raise ValueError(f"num_channels {num_channels} must divide the input's {in_channels} channels")
        self.in_channels, self.group_size, self.num_channels, self.eps = in_channels, group_size, num_channels, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = min(self.group_size, n)
        while n % group:
            group -= 1
        f = self.num_channels
        y = x.to(torch.promote_types(x.dtype, torch.float32)).reshape(group, n // group, f, c // f, h, w)
        std = (y.var(dim=0, unbiased=False) + self.eps).sqrt()         # (n//group, f, c//f, h, w)
        stat = std.mean(dim=(2, 3, 4)).to(x.dtype)                      # (n//group, f)
        maps = stat.repeat(group, 1)[:, :, None, None].expand(n, f, h, w)
        return torch.cat([x, maps], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
