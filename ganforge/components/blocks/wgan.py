"""The unconditional discriminator's last layer as the WGAN-GP and SNGAN CIFAR-10 ResNets write it.

``projection_output`` sums the features over positions and always has a bias. Two released
CIFAR-10 ResNets differ from it in ways that change the function or the parameter count:

- WGAN-GP's critic (github igul222/improved_wgan_training, ``gan_cifar_resnet.py:171-173``):
  ReLU, then the *mean* over positions (``tf.reduce_mean(output, axis=[2,3])``), then a linear
  layer with a bias (``lib.ops.linear.Linear`` defaults to ``biases=True``, ``tflib/ops/linear.py:29``).
  The mean rather than the sum scales the critic's input gradient by 1/(H·W), which the gradient
  penalty sees, so a sum would train a different critic.
- SNGAN's CIFAR-10 discriminator (github pfnet-research/sngan_projection,
  ``dis_models/snresnet_32.py:17,27-30``): ReLU, the sum over positions, and a spectrally
  normalised linear layer *without* a bias (``SNLinear(ch, 1, ..., nobias=True)``).

Hence ``pool`` and ``bias``; the WGAN-GP residual blocks themselves are ganforge's
``down_resblock`` (mean-pool = 2×2 average pool; ``ConvMeanPool`` = conv → pool, ``MeanPoolConv``
= pool → conv, as the optimised first block does) and ``up_resblock`` (``UpsampleConv`` repeats
each pixel 2×2, i.e. nearest up-sampling, then convolves).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.components.layers.spectral_norm import SNEps, SNIterations, apply_spectral_norm
from ganforge.registry import register

__all__ = ["PooledLinearOutput"]


@register("head", "pooled_linear_output")
class PooledLinearOutput(nn.Module):
    """Unconditional D logit: ReLU → sum or mean over positions → linear to 1 (bias optional). Output (B, 1).

    ``pool: mean`` with ``spectral_norm: false`` is WGAN-GP's critic output; ``pool: sum`` with
    ``bias: false`` and spectral norm is SNGAN-CIFAR's ``l5``. See the module docstring for the lines.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        pool: Literal["sum", "mean"] = "sum",
        bias: bool = True,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.linear = apply_spectral_norm(nn.Linear(in_channels, 1, bias=bias), spectral_norm=spectral_norm,
                                          sn_eps=sn_eps, sn_iterations=sn_iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x)
        h = h.mean(dim=(2, 3)) if self.pool == "mean" else h.sum(dim=(2, 3))  # (B, C)
        return self.linear(h)
