"""StyleGAN2's own layers, written from NVlabs/stylegan2-ada-pytorch (commit d72cc7d), ``training/networks.py``.

The pieces the earlier StyleGAN components (``style_mapping``, ``style_conv``, ``style_rgb``) lack
to build the reference's networks layer for layer, with the same parameter shapes:

* ``stylegan2_const`` — the synthesis network's learned 4×4 input (``SynthesisBlock.const``);
* ``stylegan2_layer`` — the synthesis layer with the reference's up-sampling: a stride-2
  transposed convolution low-passed by the FIR filter [1, 3, 3, 1];
* ``stylegan2_conv`` — ``Conv2dLayer``: equalised-lr convolution, optional FIR down-sampling,
  bias, activation with its gain, clamp (D's FromRGB and the epilogue's conv);
* ``stylegan2_d_block`` — ``DiscriminatorBlock``, architecture ``orig`` or ``resnet``;
* ``stylegan2_d_output`` — the epilogue's two fully connected layers and the conditioning
  projection (``DiscriminatorEpilogue``, ``Discriminator.mapping``).

Equalised learning rate is a run-time scale: every weight is stored as N(0, 1) and multiplied by
1/sqrt(fan_in) in the forward pass, so the parameter shapes (and counts) are the reference's.
The generator's 'skip' architecture (a ToRGB at every resolution whose outputs are up-sampled and
summed, ``networks.py:370-373, 408-415``) is in ``stylegan2_skip.py``: the running image is a carried
stream (``carries = ("image",)``), never feature planes.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import pydantic
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.components.blocks.style import EqualizedLinear, normalize_2nd_moment
from ganforge.components.blocks.synthesis import LRELU_GAIN, LRELU_SLOPE, StyleConv
from ganforge.components.layers.fir import down_conv2d, fir_kernel, up_conv_transpose2d
from ganforge.components.layers.full_precision import autocast_enabled
from ganforge.registry import register

__all__ = ["EqualizedConv2d", "StyleGAN2Const", "StyleGAN2DBlock", "StyleGAN2DOutput", "StyleGAN2Layer"]

Clamp = Annotated[float, pydantic.Field(gt=0)]
Width = Annotated[int, pydantic.Field(ge=0)]
Taps = tuple[float, ...]
FIR = (1.0, 3.0, 3.0, 1.0)  # resample_filter, networks.py:132, 264, 338, 515 (an immutable default)
SQRT_HALF = math.sqrt(0.5)  # the resnet branches' gain, networks.py:400-402, 575-577


def bias_act(x: torch.Tensor, bias: torch.Tensor | None, *, activation: str, gain: float = 1.0,
             clamp: float | None = None) -> torch.Tensor:
    """bias → activation → × (its gain · ``gain``) → clamp (``torch_utils/ops/bias_act.py:104-122``).

    lrelu is leaky ReLU with slope 0.2 and gain sqrt(2), linear has gain 1 (``bias_act.py:24-26``); the
    clamp scales with ``gain`` as the callers pass it (``networks.py:166-168, 302-304``).
    """
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE) * (LRELU_GAIN * gain)
    elif gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp * gain, clamp * gain)
    return x


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


@register("block", "stylegan2_const")
class StyleGAN2Const(nn.Module):
    """The synthesis network's learned constant input, ``channels``×``size``² (``networks.py:358-359, 389-391``).

    StyleGAN2 does not feed z into the image path at all: the first feature map is one learned
    tensor (N(0, 1) at init), repeated for every image, and z reaches the image only through the
    styles. Used as the generator's stem, it reads nothing of its input but the batch size, so it
    asks for no input context (``in_features``) and z reaches it unused.
    """

    def __init__(self, *, channels: Annotated[int, pydantic.Field(ge=1)] = 512,
                 size: Annotated[int, pydantic.Field(ge=1)] = 4) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.randn(channels, size, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.const.unsqueeze(0).expand(x.shape[0], -1, -1, -1)

    def extra_repr(self) -> str:
        channels, size, _ = self.const.shape
        return f"channels={channels}, size={size}"


def modulated_up_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                        kernel: torch.Tensor) -> torch.Tensor:
    """The modulated, demodulated ×2 up-sampling convolution (``networks.py:26-72``, non-fused path).

    Scale the input channels by the styles (:64), up-sample-convolve with the shared weight and
    the FIR filter (:65, ``conv2d_resample``), scale the output channels by
    d_bo = 1/sqrt(Σ_{i,k,k} (w_oikk·s_bi)² + 1e-8) (:56-58, :68-69), computed as Σ_i s_bi² Σ_kk w_oikk²
    in fp32. Under fp16 or autocast the weight and styles are first scaled by their maxima (:47-49),
    which demodulation cancels.
    """
    batch, in_channels = styles.shape
    if x.dtype == torch.float16 or autocast_enabled(x):
        kernel_size = weight.shape[2] * weight.shape[3]
        weight = weight * (1 / math.sqrt(in_channels * kernel_size)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
    x = up_conv_transpose2d(x, weight.to(x.dtype), kernel)
    energy = (styles.float().square()[:, None, :] * weight.float().square().sum(dim=[2, 3])[None]).sum(dim=2)
    return x * (energy + 1e-8).rsqrt().to(x.dtype).reshape(batch, -1, 1, 1)


@register("block", "stylegan2_layer")
class StyleGAN2Layer(StyleConv):
    """StyleGAN2's synthesis layer (``SynthesisLayer``, ``networks.py:254-305``) with its own up-sampling.

    As ``style_conv`` (modulated, demodulated k×k conv → + noise × learned strength → + bias →
    lrelu·sqrt(2) → clamp; const noise in eval mode), but ``up: true`` up-samples inside the
    convolution as the reference does: a stride-2 transposed conv followed by the FIR low-pass
    ``resample_filter`` (``networks.py:274, 298-300``; ``conv2d_resample.py:124-139``), not a
    bilinear resize before it. Without ``up`` it is ``style_conv``. One consumer of the ``style``
    entry, like ``style_conv``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        in_size: int,
        channels: Width = 0,
        kernel_size: Annotated[int, pydantic.Field(ge=1)] = 3,
        up: bool = False,
        noise: bool = True,
        activation: Literal["lrelu", "linear"] = "lrelu",
        conv_clamp: Clamp | None = None,
        style_dim: Width = 0,
        resample_filter: Taps = FIR,
    ) -> None:
        super().__init__(in_channels=in_channels, in_size=in_size, channels=channels, kernel_size=kernel_size,
                         up=up, demodulate=True, noise=noise, activation=activation, conv_clamp=conv_clamp,
                         style_dim=style_dim)
        self.name = "stylegan2_layer"
        self.register_buffer("resample_filter", fir_kernel(resample_filter))  # networks.py:274, a buffer

    def forward(self, x: torch.Tensor, *, style: torch.Tensor | None = None) -> torch.Tensor:
        if not self.up:
            return super().forward(x, style=style)
        x = modulated_up_conv2d(x, self.weight, self.styles(x, style), self.resample_filter)
        if self.noise_strength is not None:  # networks.py:292-296
            if self.training:
                plane = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
            else:
                plane = self.noise_const.to(x.dtype)
            x = x + plane * self.noise_strength.to(x.dtype)
        return bias_act(x, self.bias, activation=self.activation, clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", fir"


# ---------------------------------------------------------------------------------------------
# Discriminator
# ---------------------------------------------------------------------------------------------


@register("layer", "stylegan2_conv")
class EqualizedConv2d(nn.Module):
    """StyleGAN2's ``Conv2dLayer`` (``networks.py:122-169``): equalised-lr conv, optional FIR ×2 down-sampling.

    The weight is N(0, 1) scaled at run time by 1/sqrt(in_channels·k²), the bias starts at 0
    (:144, :148-149, :161); ``down: true`` low-passes with ``resample_filter`` and halves the size
    (``conv2d_resample.py:100-122``); then bias, activation (lrelu: slope 0.2, gain sqrt(2)) and
    ``conv_clamp`` (:164-168). 'same' padding k//2 (:143). ``channels`` 0 keeps ``in_channels``.
    It is not an ``nn.Conv2d``, so init schemes leave its unit-variance weights alone.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: Width = 0,
        kernel_size: Annotated[int, pydantic.Field(ge=1)] = 3,
        bias: bool = True,
        activation: Literal["lrelu", "linear"] = "lrelu",
        down: bool = False,
        conv_clamp: Clamp | None = None,
        resample_filter: Taps = FIR,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"stylegan2_conv needs an odd kernel_size ('same' padding k // 2), got {kernel_size}")
        out_channels = channels or in_channels
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", fir_kernel(resample_filter))  # networks.py:142, a buffer

    def run(self, x: torch.Tensor, *, gain: float = 1.0) -> torch.Tensor:
        """The layer with its output (and clamp) scaled by ``gain`` (``Conv2dLayer.forward(x, gain)``, :160-169)."""
        w = (self.weight * self.weight_gain).to(x.dtype)
        if self.down:
            x = down_conv2d(x, w, self.resample_filter)
        else:
            x = F.conv2d(x, w, padding=self.padding)
        return bias_act(x, self.bias, activation=self.activation, gain=gain, clamp=self.conv_clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)

    def extra_repr(self) -> str:
        out, cin, k, _ = self.weight.shape
        return (f"{cin}, {out}, kernel_size={k}, bias={self.bias is not None}, activation={self.activation}, "
                f"down={self.down}, conv_clamp={self.conv_clamp}")


@register("block", "stylegan2_d_block")
class StyleGAN2DBlock(nn.Module):
    """StyleGAN2's discriminator block (``DiscriminatorBlock``, ``networks.py:504-584``): halves the size.

    conv0 (3×3, width kept) → conv1 (3×3, FIR down ×2, to ``channels``), both lrelu and clamped
    (:546-550). ``resnet`` adds a 1×1 FIR-down-sampled shortcut without bias or activation and
    scales both branches by sqrt(1/2) (:552-554, :574-578), so the sum keeps unit variance; ``orig``
    is the plain chain (:579-581). The block's FromRGB (the first block's, :542-544) is a separate
    ``stylegan2_conv`` with kernel 1 before it; 'skip' (a FromRGB at every resolution) is not offered.
    ``channels`` 0 keeps ``in_channels``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        in_size: int,
        channels: Width = 0,
        architecture: Literal["orig", "resnet"] = "resnet",
        conv_clamp: Clamp | None = None,
        resample_filter: Taps = FIR,
    ) -> None:
        super().__init__()
        if in_size < 2 or in_size % 2:
            raise ValueError(f"stylegan2_d_block halves its input, which must have an even size, not {in_size}")
        out_channels = channels or in_channels
        self.architecture = architecture
        self.conv0 = EqualizedConv2d(in_channels=in_channels, kernel_size=3, conv_clamp=conv_clamp,
                                     resample_filter=resample_filter)
        self.conv1 = EqualizedConv2d(in_channels=in_channels, channels=out_channels, kernel_size=3, down=True,
                                     conv_clamp=conv_clamp, resample_filter=resample_filter)
        self.skip = None
        if architecture == "resnet":  # no clamp on the shortcut (:553-554)
            self.skip = EqualizedConv2d(in_channels=in_channels, channels=out_channels, kernel_size=1, bias=False,
                                        activation="linear", down=True, resample_filter=resample_filter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.skip is None:
            return self.conv1(self.conv0(x))
        y = self.skip.run(x, gain=SQRT_HALF)
        return y + self.conv1.run(self.conv0(x), gain=SQRT_HALF)

    def extra_repr(self) -> str:
        return f"architecture={self.architecture}"


@register("head", "stylegan2_d_output")
class StyleGAN2DOutput(nn.Module):
    """The end of StyleGAN2's discriminator epilogue (``DiscriminatorEpilogue``, ``networks.py:614-668``).

    Flatten → fully connected to ``in_channels`` features (lrelu) → fully connected to one logit
    (:639-640, :659-660), both equalised-lr (``FullyConnectedLayer``). The epilogue's minibatch
    standard deviation and 3×3 conv come before it as ``minibatch_stddev`` and ``stylegan2_conv``.
    With classes, the output layer gives ``cmap_dim`` values (0: ``in_channels``, the reference's
    default, :697-698) and the logit is their dot product with an embedding of the label scaled by
    1/sqrt(cmap_dim) (:663-665); the embedding is the reference's label mapping network: a linear
    embedding of the one-hot label, normalised, then ``mapping_layers`` lrelu layers with
    learning-rate multiplier 0.01 (``MappingNetwork(z_dim=0, w_avg_beta=None)``, :714, :174-229).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        in_size: int,
        num_classes: int = 0,
        cmap_dim: Width = 0,
        mapping_layers: Annotated[int, pydantic.Field(ge=1)] = 8,
    ) -> None:
        super().__init__()
        self.fc = EqualizedLinear(in_features=in_channels * in_size**2, out_features=in_channels, lrelu=True)
        self.num_classes = num_classes
        self.cmap_dim = (cmap_dim or in_channels) if num_classes > 0 else 0
        self.out = EqualizedLinear(in_features=in_channels, out_features=self.cmap_dim or 1)
        self.embed = self.mapping = None
        if num_classes > 0:
            self.embed = EqualizedLinear(in_features=num_classes, out_features=self.cmap_dim)  # :203-204
            self.mapping = nn.Sequential(*(EqualizedLinear(in_features=self.cmap_dim, out_features=self.cmap_dim,
                                                           lr_multiplier=0.01, lrelu=True)
                                           for _ in range(mapping_layers)))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.out(self.fc(x.flatten(1)))  # (B, 1) or (B, cmap_dim)
        if self.embed is None:
            return x
        if labels is None:
            raise ValueError(f"stylegan2_d_output projects onto one of {self.num_classes} classes and needs labels")
        onehot = F.one_hot(labels.long(), self.num_classes).to(x.dtype)
        cmap = self.mapping(normalize_2nd_moment(self.embed(onehot)))  # networks.py:221-229
        return (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))

    def extra_repr(self) -> str:
        return f"cmap_dim={self.cmap_dim}"

