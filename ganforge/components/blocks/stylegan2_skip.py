"""StyleGAN2's 'skip' generator: a ToRGB at every resolution, their images up-sampled and summed.

Written from NVlabs/stylegan2-ada-pytorch (commit d72cc7d), ``training/networks.py``: the default
synthesis architecture is 'skip' (:337). Every block ends with a ToRGB (``ToRGBLayer``, :310-324;
:370-373) whose output is added to the running image of the blocks before it, up-sampled ×2 with the
FIR filter (``upfirdn2d.upsample2d``, :408-415), so the low resolutions paint the coarse image and each
higher one adds detail. The running image travels beside the features as the carried stream
``image`` (README "Writing a plugin", rule 3):

* ``stylegan2_torgb_skip`` (layer) — a block's ToRGB; passes x on unchanged and the image on;
* ``stylegan2_skip_output`` (head) — the last block's ToRGB; returns the finished image;
* ``stylegan2_mapping`` (context) — ``style_mapping`` laid out as the reference's ``ws``.

Why a mapping of its own: in the reference a block's ToRGB reads the same w as the next block's first
conv (``SynthesisNetwork.forward`` takes ``num_conv + num_torgb`` ws per block but advances by
``num_conv``, :462-466), so a skip G has num_ws = convs + 1 (:444-454; 14 at 256²), not one w per
layer. ``style_mapping`` gives every consumer of ``style`` its own slot, which would add a slot per
ToRGB and change style mixing (cutoff uniform in [1, num_ws), ``loss.py:43-45``), truncation cutoff and
path length (mean over num_ws, ``loss.py:83-84``). Here the ToRGBs consume ``rgb_style`` instead, and
the producer builds the reference's ``ws`` and gives both entries as its slices.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar

import pydantic
import torch

from ganforge.components.blocks.style import Fraction, PositiveInt, StyleMapping
from ganforge.components.blocks.synthesis import ModulatedConv, modulated_conv2d
from ganforge.components.layers.fir import fir_kernel, upfirdn2d
from ganforge.components.layers.full_precision import without_autocast
from ganforge.registry import register

__all__ = ["StyleGAN2Mapping", "StyleGAN2SkipOutput", "StyleGAN2ToRGB", "rgb_slots", "upsample2d"]

Clamp = Annotated[float, pydantic.Field(gt=0)]
Taps = tuple[float, ...]
FIR = (1.0, 3.0, 3.0, 1.0)  # resample_filter, networks.py:338 (an immutable default)


def upsample2d(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """×2 FIR up-sampling, ``upfirdn2d.upsample2d(img, f)`` (``torch_utils/ops/upfirdn2d.py:308-343``).

    Zeros after every pixel, padding (fw+1)//2 before and (fw−2)//2 after (:337-342), the filter ×4
    (gain up², :343) so the mean brightness is kept.
    """
    fh, fw = kernel.shape
    return upfirdn2d(image, kernel, up=2, padding=((fw + 1) // 2, (fw - 2) // 2, (fh + 1) // 2, (fh - 2) // 2),
                     gain=4.0)


def rgb_slots(num_styles: int, num_rgb: int) -> tuple[int, ...]:
    """The ws index of each ToRGB (in stack order), given the convs (``style``) and ToRGBs (``rgb_style``).

    The reference's arithmetic (``networks.py:444-454, 462-466``): the last ToRGB has the one slot
    after the last conv's, num_ws = convs + 1; each earlier ToRGB closes a block of two convs and
    shares its slot with the next block's first conv, two slots before the next ToRGB's. For the
    full skip G (convs = 2·ToRGBs − 1: the 4×4 block has one conv) that is 1, 3, 5, ..., convs.
    Counts with fewer convs than that (not a StyleGAN2 stack) clamp at slot 0.
    """
    return tuple(max(num_styles - 2 * (num_rgb - 1 - j), 0) for j in range(num_rgb))


@register("context", "stylegan2_mapping")
class StyleGAN2Mapping(StyleMapping):
    """StyleGAN2's mapping network with the reference's ``ws`` layout (``networks.py:174-249, 444-466``).

    As ``style_mapping`` (the same layers, w_avg, class embedding), but the per-layer styles are the
    reference's ``ws`` (B, num_ws, w_dim), num_ws = the consumers of ``style`` (the convs), + 1 when
    there are ToRGBs consuming ``rgb_style``. Style mixing (cutoff c = 1 + ⌊u·(num_ws−1)⌋, i.e. uniform
    in [1, num_ws), ``loss.py:43-45``) and truncation (``truncation_cutoff`` counts ws,
    ``networks.py:241-248``) act on ``ws``, which is then sliced: ``style`` = ws[:, :convs] (conv i
    reads w_i), ``rgb_style`` = ws at ``rgb_slots`` (1, 3, 5, ... for a skip G). ``ws`` itself is an
    entry too, for ``path_length`` (``context: ws``): its gradient is the reference's, so the lengths
    (mean over num_ws) are too. ``w`` is the unmixed w. Parameters tagged ``mapping``, lr multiplier
    built in, as ``style_mapping``.
    """

    provides: ClassVar[dict[str, str]] = {"style": "per_layer", "rgb_style": "per_layer", "ws": "shared",
                                          "w": "shared"}

    def __init__(
        self,
        *,
        latent_dim: int,
        num_classes: int = 0,
        consumers: dict[str, int],
        w_dim: PositiveInt = 512,
        num_layers: PositiveInt = 8,
        lr_multiplier: Annotated[float, pydantic.Field(gt=0)] = 0.01,
        w_avg_beta: Fraction = 0.995,
        truncation_cutoff: PositiveInt | None = None,
    ) -> None:
        super().__init__(latent_dim=latent_dim, num_classes=num_classes, consumers=consumers, w_dim=w_dim,
                         num_layers=num_layers, lr_multiplier=lr_multiplier, w_avg_beta=w_avg_beta,
                         truncation_cutoff=truncation_cutoff)
        num_rgb = int(consumers.get("rgb_style", 0))
        self.rgb_slots = rgb_slots(self.num_styles, num_rgb)
        self.num_ws = self.num_styles + (1 if num_rgb else 0)  # networks.py:452-454

    def forward(self, *, z: torch.Tensor, labels: torch.Tensor | None = None, mix_z: torch.Tensor | None = None,
                mix_cutoff: torch.Tensor | None = None, truncation_psi: float | None = None) -> dict[str, torch.Tensor]:
        w = self.map(z, labels)  # (B, w_dim)
        if self.training:  # networks.py:232-234; the mixing latent does not move it (loss.py:45)
            with torch.no_grad():
                self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws, w = self.broadcast(w, self.num_ws, labels=labels, mix_z=mix_z, mix_cutoff=mix_cutoff,
                               truncation_psi=truncation_psi)
        return {"style": ws[:, :self.num_styles], "rgb_style": ws[:, list(self.rgb_slots)], "ws": ws, "w": w}

    def extra_repr(self) -> str:
        return f"num_ws={self.num_ws}, rgb_slots={list(self.rgb_slots)}"


@register("layer", "stylegan2_torgb_skip")
class StyleGAN2ToRGB(ModulatedConv):
    """A block's ToRGB in the 'skip' generator (``ToRGBLayer``, ``networks.py:310-324``; :408-415).

    The ToRGB: a 1×1 modulated conv without demodulation, weight gain 1/sqrt(in_channels) folded into
    the styles (:318, :321-322), + bias, no activation, clamped to ±``conv_clamp`` (:323). Its styles come
    from the ``rgb_style`` entry (``stylegan2_mapping``: the w slot it shares with the next block's first
    conv); with ``rgb_style_dim`` 0 it is unmodulated. The carried ``image`` (None at the first ToRGB,
    which starts it) is up-sampled ×2 with the FIR filter and this ToRGB's output added (:410-415); the
    features x pass on unchanged. The image is kept in fp32 as in the reference (:414, :419), also
    under autocast.
    """

    carries = ("image",)
    component_name: ClassVar[str] = "stylegan2_torgb_skip"

    def __init__(
        self,
        *,
        in_channels: int,
        channels: Annotated[int, pydantic.Field(ge=1)] = 3,
        conv_clamp: Clamp | None = None,
        rgb_style_dim: Annotated[int, pydantic.Field(ge=0)] = 0,
        resample_filter: Taps = FIR,
    ) -> None:
        super().__init__(in_channels=in_channels, out_channels=channels, kernel_size=1, style_dim=rgb_style_dim,
                         name=self.component_name)
        self.conv_clamp = conv_clamp
        self.weight_gain = 1 / math.sqrt(in_channels)  # :318, kernel_size 1
        self.register_buffer("resample_filter", fir_kernel(resample_filter))  # networks.py:354, a buffer

    def rgb(self, x: torch.Tensor, rgb_style: torch.Tensor | None) -> torch.Tensor:
        """This resolution's ToRGB output (B, channels, H, W)."""
        if self.affine is not None and rgb_style is None:
            raise ValueError(f"{self.name} is modulated by the 'rgb_style' context entry ({self.style_dim} values "
                             "per image) but received none; use the stylegan2_mapping context producer")
        styles = self.styles(x, rgb_style) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x

    def add(self, x: torch.Tensor, image: torch.Tensor | None, rgb_style: torch.Tensor | None) -> torch.Tensor:
        """The carried image up-sampled ×2, plus this ToRGB's output, in fp32 (``networks.py:410-415``)."""
        y = self.rgb(x, rgb_style)
        if image is None:
            return y.float()
        if tuple(image.shape[2:]) != (x.shape[2] // 2, x.shape[3] // 2) or x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"{self.name} up-samples the carried image ×2 to its input's size {tuple(x.shape[2:])}, "
                             f"but the image is {tuple(image.shape[2:])}; put one ToRGB after each block")
        if image.shape[1] != y.shape[1]:
            raise ValueError(f"{self.name} adds {y.shape[1]} channels to a carried image of {image.shape[1]}")
        with without_autocast(x):
            return upsample2d(image.float(), self.resample_filter) + y.float()

    def forward(self, x: torch.Tensor, *, rgb_style: torch.Tensor | None = None,
                image: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"x": x, "image": self.add(x, image, rgb_style)}

    def extra_repr(self) -> str:
        out, cin, _, _ = self.weight.shape
        return f"{cin}, {out}, rgb_style_dim={self.style_dim}, conv_clamp={self.conv_clamp}, fir"


@register("head", "stylegan2_skip_output")
class StyleGAN2SkipOutput(StyleGAN2ToRGB):
    """The last block's ToRGB in the 'skip' generator: returns the finished image (``networks.py:408-415, 472``).

    As ``stylegan2_torgb_skip`` (the carried image up-sampled ×2 plus this resolution's ToRGB; alone, when
    no image reaches it), but it is the generator's head and its output is the network's: the image,
    (B, channels, H, W) in fp32, linear (no tanh).
    """

    component_name: ClassVar[str] = "stylegan2_skip_output"

    def forward(self, x: torch.Tensor, *, rgb_style: torch.Tensor | None = None,  # type: ignore[override]
                image: torch.Tensor | None = None) -> torch.Tensor:
        return self.add(x, image, rgb_style)

