"""Batch norm and class-conditional batch norm (SAGAN/BigGAN generators)."""

from __future__ import annotations

from typing import Annotated

import pydantic
import torch
from torch import nn
from torch.nn import functional as F

from ganforge.registry import register

__all__ = ["BatchNorm", "ConditionalBatchNorm2d", "make_batch_norm"]

Eps = Annotated[float, pydantic.Field(gt=0)]
Momentum = Annotated[float, pydantic.Field(ge=0, le=1)]


@register("layer", "batch_norm")
class BatchNorm(nn.BatchNorm2d):
    """Plain 2-D batch norm with learned gain and bias (eps 1e-5 as the official SAGAN code's, ops.py:363).

    ``momentum`` is torch's convention: the weight of the newest batch in the running
    statistics used in evaluation mode.
    """

    def __init__(self, *, in_channels: int, eps: Eps = 1e-5, momentum: Momentum = 0.1) -> None:
        super().__init__(in_channels, eps=eps, momentum=momentum, affine=True)


@register("layer", "cbn")
class ConditionalBatchNorm2d(nn.Module):
    """Class-conditional batch norm: shared statistics, a gain and bias per class.

    Batch norm without affine parameters followed by per-class gain (initialised to 1) and
    bias (initialised to 0) looked up by label, as in the official SAGAN generator
    (github brain-research/self-attention-gan at ad9612e, ``ops.py:304-358``). With an
    unconditional model (num_classes == 0) it is plain batch norm with learned gain/bias and
    ignores labels. The tables are plain parameters (``class_gain``, ``class_bias``, shape
    classes × channels), so weight-init schemes leave them alone.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int = 0,
        eps: Eps = 1e-5,
        momentum: Momentum = 0.1,
    ) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(in_channels, eps=eps, momentum=momentum, affine=num_classes == 0)
        if num_classes > 0:
            self.class_gain = nn.Parameter(torch.ones(num_classes, in_channels))
            self.class_bias = nn.Parameter(torch.zeros(num_classes, in_channels))

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        out = self.bn(x)
        if not self.conditional:
            return out
        if labels is None:
            raise ValueError(
                f"conditional batch norm has {self.num_classes} classes and needs class labels; got labels=None"
            )
        # A row lookup, not indexing: on several CPU threads indexing's backward adds a class's rows
        # in a run-dependent order once rows are wide (measured: 4 classes × 2,048 channels, batch
        # 64); embedding's backward is deterministic, with the same sums where indexing's were.
        gain = F.embedding(labels, self.class_gain)[:, :, None, None]
        bias = F.embedding(labels, self.class_bias)[:, :, None, None]
        return out * gain + bias


def make_batch_norm(
    channels: int,
    *,
    num_classes: int = 0,
    conditional: bool = True,
    eps: float = 1e-5,
    momentum: float = 0.1,
) -> ConditionalBatchNorm2d:
    """BN or CBN for a block: class-conditional when ``conditional`` and num_classes > 0.

    Always returns a module called as ``norm(x, labels)``; it ignores labels when plain.
    """
    return ConditionalBatchNorm2d(
        in_channels=channels,
        num_classes=num_classes if conditional else 0,
        eps=eps,
        momentum=momentum,
    )
