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
from torch.nn import functional as F

from ganforge.registry import register

from .full_precision import without_autocast

__all__ = ["MinibatchStdDev"]


@register("layer", "minibatch_stddev")
class MinibatchStdDev(nn.Module):
    """Appends ``num_channels`` maps holding the standard deviation across groups of ``group_size`` images.

    Within each group (a batch not divisible by ``group_size`` uses the largest divisor that
    fits, as in the official ProGAN/StyleGAN code) the per-feature standard deviation over the
    group's images is averaged over channels (split in ``num_channels`` slices) and positions,
    and broadcast as constant maps to every image of the group. Output: C + ``num_channels`` channels.

    ``by_class: true`` (class-conditional D) groups each image with the batch's images of its own
    class instead: a generator that draws one image per class looks diverse in a mixed-class group
    and shows its collapse only within a class. An image alone in its class gets spread 0.
    """

    batch_dependent = True  # the engine then never mixes real and generated images in one pass

    def __init__(self, *, in_channels: int, num_classes: int = 0, group_size: Annotated[int, Field(ge=2)] = 4,
                 num_channels: Annotated[int, Field(ge=1)] = 1, by_class: bool = False,
                 eps: Annotated[float, Field(gt=0)] = 1e-8) -> None:
        super().__init__()
        if in_channels % num_channels:
            raise ValueError(f"num_channels {num_channels} must divide the input's {in_channels} channels")
        self.in_channels, self.group_size, self.num_channels, self.eps = in_channels, group_size, num_channels, eps
        self.by_class, self.num_classes = by_class, num_classes

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        # The spread is a small difference of large sums: autocast would run the class sums' matrix
        # products in bf16, so it is computed in fp32 whatever the autocast setting.
        with without_autocast(x):
            maps = self._maps(x, labels)
        return torch.cat([x, maps], dim=1)

    def _maps(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.by_class and labels is not None and self.num_classes > 0:
            return self._by_class(x, labels)
        n, c, h, w = x.shape
        group = min(self.group_size, n)
        while n % group:
            group -= 1
        f = self.num_channels
        y = x.to(torch.promote_types(x.dtype, torch.float32)).reshape(group, n // group, f, c // f, h, w)
        std = (y.var(dim=0, unbiased=False) + self.eps).sqrt()         # (n//group, f, c//f, h, w)
        stat = std.mean(dim=(2, 3, 4)).to(x.dtype)                      # (n//group, f)
        return stat.repeat(group, 1)[:, :, None, None].expand(n, f, h, w)

    def _by_class(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        f = self.num_channels
        labels = labels.long()
        y = x.to(torch.promote_types(x.dtype, torch.float32)).reshape(n, -1)
        members = torch.nn.functional.one_hot(labels, self.num_classes).to(y.dtype)             # (n, classes)
        count = members.sum(0).clamp_min(1)[:, None]
        mean = members.T @ y / count
        # Each image's class row is looked up with embedding, not indexing: indexing's backward (an
        # accumulating scatter) sums in a run-dependent order on several CPU threads; embedding's
        # backward does not, and its forward picks the same values.
        var = members.T @ (y - F.embedding(labels, mean)) ** 2 / count                       # population variance
        stat = (var + self.eps).sqrt().reshape(-1, f, (c // f) * h * w).mean(2)               # (classes, f)
        return F.embedding(labels, stat).to(x.dtype)[:, :, None, None].expand(n, f, h, w)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}, by_class={self.by_class}"
