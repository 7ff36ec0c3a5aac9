"""Parts of StudioGAN's CIFAR backbones that the SAGAN, DCGAN and BigGAN blocks do not express exactly.

PyTorch-StudioGAN builds G and D from ``src/models/deep_conv.py`` (LSGAN, DCGAN), ``resnet.py``
(ACGAN-Mod, SNGAN, SAGAN) and ``big_resnet.py`` (BigGAN, ContraGAN). Where they differ from
ganforge's other blocks it is in small things that change parameter counts or outputs: convs keep
their bias next to a batch norm, batch norms use eps 1e-4 (``src/utils/ops.py:227-228``), a
discriminator without spectral norm gets batch norms inside its residual blocks, its residual
shortcut reads the input after the in-place activation when there is no batch norm, and the
conditional batch norm's gain and bias are linear maps of a one-hot label (``ops.py:14-28``).
These components reproduce them; with them a StudioGAN config is a plain blueprint.
"""

from __future__ import annotations

from typing import Annotated

import pydantic
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.components.blocks.biggan import LinearConditionalBatchNorm2d
from ganforge.components.blocks.resblocks import LeakySlope
from ganforge.components.layers.norms import Eps, Momentum
from ganforge.components.layers.spectral_norm import Channels, SNEps, SNIterations, apply_spectral_norm
from ganforge.registry import register

__all__ = ["ConvBN", "ConvImageOutput", "DeepConvDown", "DeepConvUp", "OneHotLabels", "StudioGANDownResBlock"]

Dim = Annotated[int, pydantic.Field(ge=0)]


def _conv(cin: int, cout: int, kernel_size: int, sn: dict, *, stride: int = 1, padding: int | None = None) -> nn.Conv2d:
    pad = kernel_size // 2 if padding is None else padding
    return apply_spectral_norm(nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=pad), **sn)


def _bn(channels: int, enabled: bool, eps: float, momentum: float) -> nn.Module:
    """StudioGAN's ``batchnorm_2d`` (affine, ops.py:227-228), or nothing when D is spectrally normalised."""
    return nn.BatchNorm2d(channels, eps=eps, momentum=momentum) if enabled else nn.Identity()


def _act(x: torch.Tensor, leaky_slope: float) -> torch.Tensor:
    return F.leaky_relu(x, leaky_slope) if leaky_slope else F.relu(x)


@register("context", "one_hot_labels")
class OneHotLabels(nn.Module):
    """The class label as a one-hot vector, handed to the blocks as their ``class_embedding``.

    StudioGAN's ``deep_conv`` and ``resnet`` generators condition with cBN on the one-hot label
    (``src/models/resnet.py:139-140``, ``deep_conv.py:98-99``): its ``ConditionalBatchNorm2d``
    computes gain = 1 + W_g·onehot, bias = W_b·onehot with bias-free linears (``ops.py:21-28``)
    that the init scheme initialises like every linear (``ops.py:135-141``). Fed to a block that
    conditions its batch norms linearly on ``class_embedding`` (``biggan_up``, ``deep_conv_up``)
    this is that layer exactly, initialisation included. No parameters.
    """

    provides = {"class_embedding": "shared"}

    def __init__(self, *, num_classes: int) -> None:
        super().__init__()
        if num_classes <= 0:
            raise ValueError("one_hot_labels encodes class labels, so it needs a class-conditional model "
                             f"(num_classes > 0), got num_classes={num_classes}")
        self.num_classes = num_classes

    def forward(self, *, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if labels is None:
            raise ValueError("one_hot_labels needs class labels; got labels=None")
        return {"class_embedding": F.one_hot(labels, self.num_classes).float()}  # (B, num_classes)


@register("block", "deep_conv_up")
class DeepConvUp(nn.Module):
    """StudioGAN's ``deep_conv`` generator block: 4×4 stride-2 transposed conv → BN → ReLU.

    ``src/models/deep_conv.py:15-39``: the transposed conv keeps its bias (``ops.deconv2d``,
    ops.py:176-184) although a batch norm follows, which has eps 1e-4 (``ops.batchnorm_2d``). With
    ``class_embedding_dim`` > 0 (a ``class_embedding`` context entry, e.g. ``one_hot_labels``) the
    batch norm is conditional as StudioGAN's cBN (gain 1 + W_g·y, bias W_b·y); otherwise it has a
    learned gain and bias.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: Channels = 128,
        class_embedding_dim: Dim = 0,
        bn_eps: Eps = 1e-4,
        bn_momentum: Momentum = 0.1,
        spectral_norm: bool = False,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        sn = {"spectral_norm": spectral_norm, "sn_eps": sn_eps, "sn_iterations": sn_iterations}
        self.deconv = apply_spectral_norm(nn.ConvTranspose2d(in_channels, channels, 4, stride=2, padding=1), **sn)
        self.class_embedding_dim = class_embedding_dim
        self.bn = LinearConditionalBatchNorm2d(channels, class_embedding_dim, eps=bn_eps, momentum=bn_momentum, sn=sn)

    def forward(self, x: torch.Tensor, *, class_embedding: torch.Tensor | None = None) -> torch.Tensor:
        if self.class_embedding_dim and class_embedding is None:
            raise ValueError(f"deep_conv_up conditions on class_embedding ({self.class_embedding_dim} values per "
                             "image) but received none; add a context producer that provides it")
        return F.relu(self.bn(self.deconv(x), class_embedding))


@register("block", "deep_conv_down")
class DeepConvDown(nn.Module):
    """StudioGAN's ``deep_conv`` discriminator block: 3×3 conv → BN → act → 4×4 stride-2 conv → BN → act.

    ``src/models/deep_conv.py:129-153``: both convs keep their bias; the batch norms (eps 1e-4)
    are there only when D is not spectrally normalised (``batch_norm``; StudioGAN drops them with
    ``apply_d_sn``). The activation is ReLU (StudioGAN's default ``d_act_fn``, src/config.py:78)
    or a leaky ReLU with ``leaky_slope`` (StudioGAN's ``Leaky_ReLU`` is 0.1, config.py:486).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        in_size: int,
        channels: Channels = 64,
        batch_norm: bool = True,
        bn_eps: Eps = 1e-4,
        bn_momentum: Momentum = 0.1,
        leaky_slope: LeakySlope = 0.0,
        spectral_norm: bool = False,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        if in_size % 2 != 0:
            raise ValueError(f"deep_conv_down halves the resolution with a stride-2 conv, so the input size must be "
                             f"even, got {in_size}×{in_size}")
        sn = {"spectral_norm": spectral_norm, "sn_eps": sn_eps, "sn_iterations": sn_iterations}
        self.conv1 = _conv(in_channels, channels, 3, sn)
        self.bn1 = _bn(channels, batch_norm, bn_eps, bn_momentum)
        self.conv2 = _conv(channels, channels, 4, sn, stride=2, padding=1)
        self.bn2 = _bn(channels, batch_norm, bn_eps, bn_momentum)
        self.leaky_slope = leaky_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _act(self.bn1(self.conv1(x)), self.leaky_slope)
        return _act(self.bn2(self.conv2(h)), self.leaky_slope)


@register("block", "conv_bn")
class ConvBN(nn.Module):
    """A convolution (with bias) and, optionally, a batch norm; no activation.

    The last layer of StudioGAN's ``deep_conv`` discriminator before its output
    (``src/models/deep_conv.py:183-186`` and :242-246: 3×3 conv 256 → 512, BN when D is not
    spectrally normalised); the head's ReLU and sum follow (``projection_output``,
    ``acgan_output``).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: Channels = 512,
        kernel_size: Annotated[int, pydantic.Field(ge=1)] = 3,
        batch_norm: bool = True,
        bn_eps: Eps = 1e-4,
        bn_momentum: Momentum = 0.1,
        spectral_norm: bool = False,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"conv_bn keeps the resolution ('same' padding), so kernel_size must be odd, "
                             f"got {kernel_size}")
        sn = {"spectral_norm": spectral_norm, "sn_eps": sn_eps, "sn_iterations": sn_iterations}
        self.conv = _conv(in_channels, channels, kernel_size, sn)
        self.bn = _bn(channels, batch_norm, bn_eps, bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


@register("block", "studiogan_down_resblock")
class StudioGANDownResBlock(nn.Module):
    """StudioGAN's residual discriminator block (``resnet.py`` / ``big_resnet.py``), batch norms optional.

    ``src/models/resnet.py:207-254`` (``DiscBlock``, the same in big_resnet.py:195-242): [BN →] act
    → 3×3 conv → [BN →] act → 3×3 conv → [2×2 avg pool], plus a shortcut [BN →] 1×1 conv → [avg
    pool] when down-sampling or changing channels (identity otherwise). ``optimized: true`` is the
    first block (``DiscOptBlock``, resnet.py:172-204): 3×3 conv → [BN →] act → 3×3 conv → avg pool,
    shortcut avg pool → [BN →] 1×1 conv. The batch norms (eps 1e-4, ``ops.batchnorm_2d``) exist only
    when D is not spectrally normalised (``batch_norm``; resnet.py:219-229).

    ``activated_shortcut``: StudioGAN's activation is in place (``nn.ReLU(inplace=True)``,
    src/config.py:483-484) and ``DiscBlock`` keeps ``x0 = x`` before applying it (resnet.py:234-237),
    so without a batch norm in between the shortcut reads the *activated* input, act(x); with batch
    norms the activation works on BN's output and the shortcut reads x. Unset (None) follows
    StudioGAN: activated exactly when ``batch_norm`` is false. ``false`` with ``batch_norm: false``
    is ``down_resblock``'s computation (the shortcut reads x).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        in_size: int,
        channels: Channels = 128,
        downsample: bool = True,
        optimized: bool = False,
        batch_norm: bool = True,
        activated_shortcut: bool | None = None,
        bn_eps: Eps = 1e-4,
        bn_momentum: Momentum = 0.1,
        leaky_slope: LeakySlope = 0.0,
        spectral_norm: bool = False,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        if (downsample or optimized) and in_size % 2 != 0:
            raise ValueError(f"studiogan_down_resblock halves the resolution with 2×2 average pooling, so the input "
                             f"size must be even, got {in_size}×{in_size}; set downsample: false or change the "
                             "resolution")
        sn = {"spectral_norm": spectral_norm, "sn_eps": sn_eps, "sn_iterations": sn_iterations}
        bn = {"enabled": batch_norm, "eps": bn_eps, "momentum": bn_momentum}
        self.optimized = optimized
        self.downsample = downsample or optimized  # DiscOptBlock always pools (resnet.py:197-199)
        self.activated_shortcut = (not batch_norm) if activated_shortcut is None else activated_shortcut
        self.leaky_slope = leaky_slope
        # The first BN normalises the block input, except in DiscOptBlock (there it follows conv1).
        self.bn1 = _bn(channels if optimized else in_channels, **bn)
        self.conv1 = _conv(in_channels, channels, 3, sn)
        self.bn2 = nn.Identity() if optimized else _bn(channels, **bn)
        self.conv2 = _conv(channels, channels, 3, sn)
        self.learnable_shortcut = optimized or downsample or in_channels != channels
        if self.learnable_shortcut:
            self.shortcut_bn = _bn(in_channels, **bn)
            self.shortcut = _conv(in_channels, channels, 1, sn)

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.optimized:
            h = self.conv2(_act(self.bn1(self.conv1(x)), self.leaky_slope))
            return self._down(h) + self.shortcut(self.shortcut_bn(self._down(x)))
        activated = _act(self.bn1(x), self.leaky_slope)
        h = self._down(self.conv2(_act(self.bn2(self.conv1(activated)), self.leaky_slope)))
        skip = activated if self.activated_shortcut else x
        if not self.learnable_shortcut:
            return h + skip
        return h + self._down(self.shortcut(self.shortcut_bn(skip)))


@register("head", "conv_image_output")
class ConvImageOutput(nn.Module):
    """Generator output as StudioGAN writes it: [BN → ReLU →] 3×3 conv (with bias) → tanh.

    ``batch_norm: true`` is the ``resnet``/``big_resnet`` ending (``src/models/resnet.py:130-132``
    and :165-168; ``big_resnet.py:115-117`` and :154-157): a plain batch norm with eps 1e-4
    (``ops.batchnorm_2d``), ReLU, the conv. ``batch_norm: false`` is the ``deep_conv`` ending, the
    conv and tanh alone (``deep_conv.py:91`` and :124-125; its last block already ends in ReLU).
    Spectral norm off by default, StudioGAN's ``apply_g_sn`` default (src/config.py:72).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: Channels = 3,
        batch_norm: bool = True,
        bn_eps: Eps = 1e-4,
        bn_momentum: Momentum = 0.1,
        spectral_norm: bool = False,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        sn = {"spectral_norm": spectral_norm, "sn_eps": sn_eps, "sn_iterations": sn_iterations}
        self.batch_norm = batch_norm
        self.bn = _bn(in_channels, batch_norm, bn_eps, bn_momentum)
        self.conv = _conv(in_channels, channels, 3, sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(x)) if self.batch_norm else x
        return torch.tanh(self.conv(h))
