"""StyleGAN2's synthesis layer and ToRGB as generator components, modulated by the ``style`` entry.

Written from NVlabs/stylegan2-ada-pytorch (commit d72cc7d), ``training/networks.py``
(``modulated_conv2d`` :26-84, ``SynthesisLayer`` :254-305, ``ToRGBLayer`` :310-324) and
``torch_utils/ops/bias_act.py`` (activation gains :24-26, bias → activation → gain → clamp
:104-122). Each component is one consumer of the per-layer ``style`` entry of a context producer
(``style_mapping``): the i-th consumer gets w_i (B, style_dim) and maps it to per-input-channel
scales with its own affine layer.

What is not reproduced: the reference up-samples inside the convolution (a stride-2 transposed
conv followed by FIR low-pass filtering with ``resample_filter = [1,3,3,1]``, ``upfirdn2d``;
``torch_utils/ops/conv2d_resample.py:124-139``, ``training/networks.py:264, 274``); here ``up``
is plain bilinear ×2 up-sampling before the conv, and ``style_rgb`` converts the last features
only (the 'orig' architecture). These are the light versions; the reference's own layers (FIR
up-sampling, the learned 4×4 constant, the 'skip' ToRGBs summed over resolutions, :337, :409-415)
are ``stylegan2.py`` and ``stylegan2_skip.py``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import pydantic
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.components.blocks.style import EqualizedLinear
from ganforge.components.layers.full_precision import autocast_enabled
from ganforge.registry import register

__all__ = ["ModulatedConv", "StyleConv", "StyleToRGB", "modulated_conv2d"]

Clamp = Annotated[float, pydantic.Field(gt=0)]
LRELU_SLOPE = 0.2  # bias_act.py:26 def_alpha
LRELU_GAIN = math.sqrt(2)  # bias_act.py:26 def_gain


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool = True,
                     padding: int = 0) -> torch.Tensor:
    """conv(x, w·s_b) per sample b, demodulated per output channel: ``training/networks.py:26-72``.

    The reference's non-fused path (:63-72, which its blocks use in training, :384-386): scale the
    input channels by the styles, run one ordinary conv for the whole batch, scale the output
    channels by the demodulation coefficients d_bo = 1/sqrt(Σ_{i,k,k} (w_oikk·s_bi)² + 1e-8)
    (:56-58). Σ_{i,k,k}(w·s)² is computed as Σ_i s_bi²·Σ_kk w_oikk², in fp32, so no (B, O, I, k, k)
    weight is built. Under fp16 the weight and styles are first scaled by their maxima (:47-49),
    which demodulation cancels; here also under autocast, whose conv runs in half precision.
    """
    batch, in_channels = styles.shape
    if demodulate and (x.dtype == torch.float16 or autocast_enabled(x)):
        kernel = weight.shape[2] * weight.shape[3]
        weight = weight * (1 / math.sqrt(in_channels * kernel)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))  # :48 max_Ikk
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)  # :49 max_I
    x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)  # :64
    x = F.conv2d(x, weight.to(x.dtype), padding=padding)  # :65
    if demodulate:
        energy = (styles.float().square()[:, None, :] * weight.float().square().sum(dim=[2, 3])[None]).sum(dim=2)
        x = x * (energy + 1e-8).rsqrt().to(x.dtype).reshape(batch, -1, 1, 1)  # :58, :66-69
    return x


class ModulatedConv(nn.Module):
    """What ``style_conv`` and ``style_rgb`` share: the weight, the bias and the style affine.

    The weight is stored as randn (``training/networks.py:280, 316``) and the bias as zeros (:284,
    :317), so the learning rate is equalised. The affine maps w to one scale per input channel,
    an equalised-lr linear layer with its bias initialised to 1 (:278, :314 ``bias_init=1``), so
    every style starts near 1. With ``style_dim`` 0 there is no affine and the styles are 1: a
    plain (demodulated) equalised conv.
    """

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 name: str) -> None:
        super().__init__()
        self.name = name
        self.style_dim = style_dim
        self.in_channels = in_channels
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.affine = None
        if style_dim > 0:
            self.affine = EqualizedLinear(in_features=style_dim, out_features=in_channels)
            with torch.no_grad():
                self.affine.bias.fill_(1.0)

    def styles(self, x: torch.Tensor, style: torch.Tensor | None) -> torch.Tensor:
        """The per-input-channel scales (B, in_channels) of this pass."""
        if self.affine is None:
            if style is not None:
                raise ValueError(f"{self.name} got a style of shape {tuple(style.shape)} but was built with "
                                 "style_dim 0 (no affine to read it)")
            return x.new_ones(x.shape[0], self.in_channels)
        if style is None:
            raise ValueError(f"{self.name} is modulated by the 'style' context entry ({self.style_dim} values "
                             "per image) but received none; add a context producer that provides 'style' "
                             "(style_mapping) to generator.context")
        if style.ndim != 2 or style.shape[1] != self.style_dim:
            raise ValueError(f"{self.name} expects style of shape (B, {self.style_dim}) (its style_dim), "
                             f"got {tuple(style.shape)}")
        return self.affine(style)


@register("block", "style_conv")
class StyleConv(ModulatedConv):
    """StyleGAN2's synthesis layer (``SynthesisLayer``, ``training/networks.py:254-305``).

    [bilinear ×2 up] → modulated k×k conv (demodulated, :299-300) → + per-pixel noise → + bias →
    activation → clamp. The noise (:292-296) is one Gaussian plane per image, shared by the
    channels, times a learned strength initialised to 0 (:283), so at init the layer is the
    noise-free one. In training it is drawn from torch's global RNG (``noise_mode='random'``,
    :293-294); in eval mode the layer adds its fixed ``noise_const`` plane (randn at build, a
    buffer: :282, :295-296), the reference's ``noise_mode='const'`` (the default of its
    ``generate.py:42``), so eval samples are deterministic. ``lrelu`` is bias_act's leaky ReLU,
    slope 0.2, times sqrt(2) (:276, :302-304; ``bias_act.py:26``); ``conv_clamp`` clamps to ±X after
    the gain (:303, ``bias_act.py:121-122``). ``demodulate`` False (the reference always
    demodulates here) folds ToRGB's weight gain 1/sqrt(in_channels·k²) (:318, :321) into the styles
    instead, so the layer stays unit-variance. ``channels`` 0 keeps ``in_channels``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        in_size: int,
        channels: Annotated[int, pydantic.Field(ge=0)] = 0,
        kernel_size: Annotated[int, pydantic.Field(ge=1)] = 3,
        up: bool = False,
        demodulate: bool = True,
        noise: bool = True,
        activation: Literal["lrelu", "linear"] = "lrelu",
        conv_clamp: Clamp | None = None,
        style_dim: Annotated[int, pydantic.Field(ge=0)] = 0,
    ) -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"style_conv needs an odd kernel_size (padding k // 2 keeps the size), got {kernel_size}")
        super().__init__(in_channels=in_channels, out_channels=channels or in_channels, kernel_size=kernel_size,
                         style_dim=style_dim, name="style_conv")
        self.up = up
        self.demodulate = demodulate
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2  # :275
        self.weight_gain = 1.0 if demodulate else 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = LRELU_GAIN if activation == "lrelu" else 1.0
        resolution = in_size * 2 if up else in_size
        self.noise_strength = nn.Parameter(torch.zeros([])) if noise else None  # :283
        if noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))  # :282

    def forward(self, x: torch.Tensor, *, style: torch.Tensor | None = None) -> torch.Tensor:
        styles = self.styles(x, style) * self.weight_gain  # (B, in_channels)
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = modulated_conv2d(x, self.weight, styles, demodulate=self.demodulate, padding=self.padding)
        if self.noise_strength is not None:
            if self.training:
                plane = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
            else:
                plane = self.noise_const.to(x.dtype)
            x = x + plane * self.noise_strength.to(x.dtype)
        x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        if self.activation == "lrelu":
            x = F.leaky_relu(x, LRELU_SLOPE) * self.act_gain
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x

    def extra_repr(self) -> str:
        out, cin, k, _ = self.weight.shape
        return (f"{cin}, {out}, kernel_size={k}, up={self.up}, demodulate={self.demodulate}, "
                f"noise={self.noise_strength is not None}, activation={self.activation}, style_dim={self.style_dim}")


@register("head", "style_rgb")
class StyleToRGB(ModulatedConv):
    """StyleGAN2's ToRGB (``ToRGBLayer``, ``training/networks.py:310-324``): features → image channels.

    A 1×1 modulated conv without demodulation, the weight gain 1/sqrt(in_channels) folded into the
    styles (:318, :321-322), plus a bias, no activation (bias_act's default ``linear``, :323), and
    ``conv_clamp`` as in ``style_conv``. No tanh: StyleGAN2's images are this linear output. It
    converts the last features only; the reference's default 'skip' architecture also adds the
    up-sampled ToRGB outputs of every lower resolution (:409-415), which is not reproduced here.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: Annotated[int, pydantic.Field(ge=1)] = 3,
        conv_clamp: Clamp | None = None,
        style_dim: Annotated[int, pydantic.Field(ge=0)] = 0,
    ) -> None:
        super().__init__(in_channels=in_channels, out_channels=channels, kernel_size=1, style_dim=style_dim,
                         name="style_rgb")
        self.conv_clamp = conv_clamp
        self.weight_gain = 1 / math.sqrt(in_channels)  # :318, kernel_size 1

    def forward(self, x: torch.Tensor, *, style: torch.Tensor | None = None) -> torch.Tensor:
        styles = self.styles(x, style) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x

    def extra_repr(self) -> str:
        out, cin, _, _ = self.weight.shape
        return f"{cin}, {out}, style_dim={self.style_dim}"
