"""Discriminator heads with named extras: AC-GAN's class logits, pooled features for feature matching.

Both pool like ``projection_output`` (ReLU → sum over positions, as StudioGAN's discriminators:
PyTorch-StudioGAN ``src/models/big_resnet.py:359-360``) and return a dict
``{"logit": (B, 1), <extra>: ...}``; ``outputs`` declares the extra, so assembly can refuse a
loss that reads an extra this head does not give.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganforge.components.blocks.resblocks import LeakySlope
from ganforge.components.layers.spectral_norm import SNEps, SNIterations, apply_spectral_norm
from ganforge.registry import register

__all__ = ["ACGANOutput", "PooledOutput"]

Classes = Annotated[int, Field(ge=0)]


def _pool(x: torch.Tensor, leaky_slope: float) -> torch.Tensor:
    """(B, C, H, W) → (B, C): (leaky) ReLU, then the sum over positions."""
    return (F.leaky_relu(x, leaky_slope) if leaky_slope else F.relu(x)).sum(dim=(2, 3))


@register("head", "acgan_output")
class ACGANOutput(nn.Module):
    """AC-GAN discriminator head (Odena et al. 2017): a real/fake logit and ``num_classes`` class logits.

    As StudioGAN's ``d_cond_mtd == "AC"``: pooled features go to a linear with bias to one logit
    (``linear1``, ``src/models/big_resnet.py:312``) and to a linear *without* bias to the class
    logits (``linear2``, ``big_resnet.py:320``, applied at ``:385``). Both spectrally normalised
    by default. Pair it with the ``acgan`` loss, which reads ``class_logits``.
    """

    outputs = ("class_logits",)

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: Classes,
        leaky_slope: LeakySlope = 0.0,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("acgan_output classifies images into their classes and needs class-labelled data "
                             f"(num_classes >= 1), got num_classes={num_classes}")
        sn = {"spectral_norm": spectral_norm, "sn_eps": sn_eps, "sn_iterations": sn_iterations}
        self.linear = apply_spectral_norm(nn.Linear(in_channels, 1), **sn)
        self.classifier = apply_spectral_norm(nn.Linear(in_channels, num_classes, bias=False), **sn)
        self.leaky_slope = leaky_slope

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = _pool(x, self.leaky_slope)  # (B, C)
        return {"logit": self.linear(h), "class_logits": self.classifier(h)}  # (B, 1), (B, num_classes)


@register("head", "pooled_output")
class PooledOutput(nn.Module):
    """Unconditional discriminator logit that also returns the pooled features it was computed from.

    ``features`` (B, C) are the input of the last linear layer: the layer Salimans et al. match
    (openai/improved-gan ``mnist_svhn_cifar10/train_cifar_feature_matching.py:108`` reads
    ``disc_layers[-2]``) and what StudioGAN's feature matching uses (``h``, ``src/worker.py:595``).
    Pair it with the ``feature_matching`` loss.
    """

    outputs = ("features",)

    def __init__(
        self,
        *,
        in_channels: int,
        leaky_slope: LeakySlope = 0.0,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        self.linear = apply_spectral_norm(nn.Linear(in_channels, 1), spectral_norm=spectral_norm, sn_eps=sn_eps,
                                          sn_iterations=sn_iterations)
        self.leaky_slope = leaky_slope

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = _pool(x, self.leaky_slope)  # (B, C)
        return {"logit": self.linear(h), "features": h}
