"""Adaptive discriminator augmentation (Karras et al. 2020, "Training GANs with Limited Data").

Augmenting every image D sees keeps D from memorising a small dataset, but a fixed strength is
either too weak to help or so strong that it leaks into G's images. ADA applies each augmentation
with a probability ``p`` that a controller adjusts during training from an overfitting signal:
``r_t = E[sign(D(real))]``, the share of real images D is confident about. Above the target, D
is overfitting and ``p`` rises; below, it falls.

Two parts, paired by a requirement (assembly refuses the layer without its controller):

* ``ada_augment`` (layer): the augmenter, with its probability in the buffer ``p``;
* ``ada`` (controller): reads D's outputs on real images after every step and writes ``p``.

Reference: NVlabs/stylegan2-ada-pytorch at commit d72cc7d041b42ec8e806021a205ed9349f87c6a4, files
``training/augment.py`` (the pipeline), ``training/training_loop.py`` (the heuristic) and
``train.py`` (the presets), read for this file and written anew here, not copied.

The augmenter is a **subset** of the reference pipeline, the exact pixel operations and two
colour transforms: x-flip, 90° rotation, integer translation, brightness, contrast. Left out:
isotropic/anisotropic scaling, arbitrary rotation and fractional translation (``augment.py``
lines 224-263), which need the reference's reflect padding, 2× upsampling with the sym6 wavelet,
``grid_sample`` and downsampling (lines 269-301); luma flip, hue rotation and saturation
(lines 327-350); image-space filtering (lines 372-400); additive noise and cutout (lines 406-427).
The reference's default preset ``bgc`` (``train.py`` line 279) also enables the geometric and
the other colour transforms; ours corresponds to ``blit`` (line 272) plus brightness and contrast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from ganforge.registry import register

from .diffaugment import check_image_batch

__all__ = ["AdaAugment", "AdaController"]

Multiplier = Annotated[float, Field(ge=0)]


@register("layer", "ada_augment")
class AdaAugment(nn.Module):
    """ADA's augmenter (a subset of the reference's, see the module's text), training mode only.

    Each image undergoes each enabled transform with probability ``multiplier × p``, as in the
    reference (``augment.py`` lines 196-218 and 311-325), in its order: x-flip, quarter turn,
    integer translation (``xint_max`` of each side at most, reflect padding), brightness (add
    N(0, ``brightness_std``)), contrast (multiply by 2^N(0, ``contrast_std``), around 0 as the
    reference's colour matrix does). Its random parameters come from torch's global generator, drawn
    whatever ``p`` is, so the random stream does not depend on ``p``. With ``p = 0`` the output equals
    the input. ``p`` starts at ``initial_p`` and is set by the ``ada`` controller, which this layer
    requires. Put it first in the discriminator, so real and generated images are both augmented.
    A quarter turn needs square images.
    """

    requires = ("controller:ada",)

    def __init__(self, *, initial_p: Annotated[float, Field(ge=0)] = 0.0,
                 xflip: Multiplier = 1.0, rotate90: Multiplier = 1.0, xint: Multiplier = 1.0,
                 xint_max: Annotated[float, Field(ge=0, le=0.5)] = 0.125,
                 brightness: Multiplier = 1.0, contrast: Multiplier = 1.0,
                 brightness_std: Annotated[float, Field(ge=0)] = 0.2,
                 contrast_std: Annotated[float, Field(ge=0)] = 0.5, in_channels: int | None = None) -> None:
        super().__init__()
        self.in_channels = in_channels  # from the assembler: this layer takes images, of these channels
        # Probability multipliers and ranges: the reference's names and defaults (augment.py lines 118-121),
        # except that the multipliers default to 1 (enabled) as in its presets (train.py lines 272, 279).
        self.xflip, self.rotate90, self.xint, self.xint_max = xflip, rotate90, xint, xint_max
        self.brightness, self.contrast = brightness, contrast
        self.brightness_std, self.contrast_std = brightness_std, contrast_std
        self.register_buffer("p", torch.tensor(float(initial_p)))  # augment.py line 126, written by the controller

    def logged_scalars(self) -> dict[str, torch.Tensor]:
        """The augmentation probability, for the training log."""
        return {"p": self.p}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.in_channels, "ada_augment")
        if not self.training:
            return x
        n, device = x.shape[0], x.device
        if self.xflip > 0:  # augment.py lines 196-202: flip with probability xflip·p, then a fair coin
            flip = torch.floor(torch.rand([n], device=device) * 2)
            flip = torch.where(torch.rand([n], device=device) < self.xflip * self.p, flip, torch.zeros_like(flip))
            x = torch.where(_per_image(flip == 1), x.flip(3), x)
        if self.rotate90 > 0:  # augment.py lines 204-210: k quarter turns, k uniform in 0..3
            if x.shape[2] != x.shape[3]:
                raise ValueError(f"ada_augment's quarter turns need square images, not {x.shape[2]}×{x.shape[3]} "
                                 "(set rotate90: 0)")
            turns = torch.floor(torch.rand([n], device=device) * 4)
            turns = torch.where(torch.rand([n], device=device) < self.rotate90 * self.p, turns, torch.zeros_like(turns))
            x = _quarter_turns(x, turns)
        if self.xint > 0:  # augment.py lines 212-218: one draw for both axes, rounded to whole pixels
            t = (torch.rand([n, 2], device=device) * 2 - 1) * self.xint_max
            t = torch.where(torch.rand([n, 1], device=device) < self.xint * self.p, t, torch.zeros_like(t))
            x = _translate_reflect(x, shift_h=torch.round(t[:, 1] * x.shape[2]),
                                   shift_w=torch.round(t[:, 0] * x.shape[3]), max_fraction=self.xint_max)
        offset = scale = None
        if self.brightness > 0:  # augment.py lines 312-317: add b to every channel
            b = torch.randn([n], device=device) * self.brightness_std
            offset = torch.where(torch.rand([n], device=device) < self.brightness * self.p, b, torch.zeros_like(b))
        if self.contrast > 0:  # augment.py lines 320-325: scale about 0 by c (after the brightness shift)
            c = torch.exp2(torch.randn([n], device=device) * self.contrast_std)
            scale = torch.where(torch.rand([n], device=device) < self.contrast * self.p, c, torch.ones_like(c))
        if offset is not None:
            x = x + _per_image(offset).to(x.dtype)
        if scale is not None:
            x = x * _per_image(scale).to(x.dtype)
        return x

    def extra_repr(self) -> str:
        return (f"xflip={self.xflip}, rotate90={self.rotate90}, xint={self.xint}, xint_max={self.xint_max}, "
                f"brightness={self.brightness}, contrast={self.contrast}")


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, 1, 1, 1)


def _quarter_turns(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Each image turned by ``turns[b]`` quarter turns (``torch.rot90``'s direction; the count is uniform,
    so the distribution is the reference's whichever way a turn goes)."""
    out = x
    for k in (1, 2, 3):
        out = torch.where(_per_image(turns == k), torch.rot90(x, k, dims=(2, 3)), out)
    return out


def _translate_reflect(x: torch.Tensor, *, shift_h: torch.Tensor, shift_w: torch.Tensor,
                       max_fraction: float) -> torch.Tensor:
    """``out[b, :, i, j] = x[b, :, i - shift_h[b], j - shift_w[b]]``, reading beyond the border by reflection.

    The reference's inverse transform reads ``pixel_in = pixel_out - t`` (``translate2d_inv``,
    augment.py lines 100-101 and 218) from an image padded with ``mode='reflect'`` (line 286). Here
    the shift is exact: a selection among the possible whole-pixel shifts (exact in any dtype, a
    backward without scatter); the reference resamples through its wavelet filters (lines 289-301).
    """
    for dim, shift in ((2, shift_h), (3, shift_w)):
        size = x.shape[dim]
        reach = min(size - 1, math.ceil(max_fraction * size))   # |round(t · size)| ≤ this for |t| ≤ max_fraction
        shift = _per_image(shift.clamp(-reach, reach).to(torch.long))
        padded = F.pad(x, [0, 0, reach, reach] if dim == 2 else [reach, reach, 0, 0], mode="reflect")
        out = x
        for k in range(-reach, reach + 1):
            if k:
                out = torch.where(shift == k, padded.narrow(dim, reach - k, size), out)
        x = out
    return x


# ---------------------------------------------------------------------------------------------
# The controller
# ---------------------------------------------------------------------------------------------


@register("controller", "ada")
class AdaController:
    """ADA's heuristic: every ``interval`` steps, move ``p`` toward the overfitting target.

    After each step it adds up ``sign(D(real))`` over the real images D scored (``real.logit``);
    every ``interval`` steps, with ``r_t`` their mean over the interval and ``n`` the number of real
    images they came from (``batch_size × interval`` in the reference),
    ``p ← max(p + sign(r_t − target) · n / (speed_kimg · 1000), 0)`` — ``training_loop.py`` lines
    311-315, with the defaults ``ada_target`` 0.6 (``train.py`` line 233), ``ada_interval`` 4 and
    ``ada_kimg`` 500 (``training_loop.py`` lines 109-111): ``p`` moves by at most 1 per
    ``speed_kimg`` thousand real images. Under ``torch.distributed`` the sums are added over the
    processes, as the reference's statistics are (``torch_utils/training_stats.py`` lines 255-256).

    ``p`` starts at the attached modules' ``initial_p`` and is written into their ``p`` buffers at
    every change; the state (``p`` and the partial sums of an unfinished interval) resumes exactly.
    """

    def __init__(self, *, target: Annotated[float, Field(ge=0, le=1)] = 0.6,
                 interval: Annotated[int, Field(ge=1)] = 4,
                 speed_kimg: Annotated[float, Field(gt=0)] = 500.0) -> None:
        self.target, self.interval, self.speed_kimg = target, interval, speed_kimg
        self._p: float | None = None          # None until attached or restored
        self._sign_sum: float | torch.Tensor = 0.0   # a tensor between updates: no device sync per step
        self._count = 0
        self._modules: tuple[nn.Module, ...] = ()

    @property
    def p(self) -> float:
        """The current augmentation probability."""
        return 0.0 if self._p is None else self._p

    def attach(self, *, modules: Sequence[nn.Module]) -> None:
        """Keeps the modules whose ``p`` it sets; a fresh controller starts from their common ``initial_p``."""
        modules = tuple(modules)
        for module in modules:
            if not isinstance(getattr(module, "p", None), torch.Tensor):
                raise TypeError(f"the ada controller sets a `p` buffer, which {type(module).__name__} does not have")
        if self._p is None and modules:
            starts = {float(module.p) for module in modules}
            if len(starts) > 1:
                raise ValueError(f"modules attached to the ada controller start from different p: {sorted(starts)}")
            self._p = starts.pop()
        self._modules = modules
        self._write()

    def feedback(self, *, step: int, real: Any) -> None:
        """After step ``step`` (0-based): add up the signs of D's logits on real images; update every ``interval``."""
        logits = real.logit.detach()
        self._sign_sum = self._sign_sum + logits.sign().float().sum()
        self._count += logits.numel()
        if (step + 1) % self.interval == 0:   # the reference's batch_idx counts steps done (line 309)
            self._update()

    def _update(self) -> None:
        total, count = self._totals()
        self._sign_sum, self._count = 0.0, 0
        if count == 0:
            return
        r_t = total / count
        direction = (r_t > self.target) - (r_t < self.target)      # np.sign, 0 at the target
        self._p = max(self.p + direction * count / (self.speed_kimg * 1000), 0.0)
        self._write()

    def _totals(self) -> tuple[float, int]:
        total = torch.as_tensor(self._sign_sum, dtype=torch.float32)   # on the training device
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            both = torch.stack([total, torch.tensor(float(self._count), device=total.device)])
            torch.distributed.all_reduce(both)
            return float(both[0]), int(both[1])
        return float(total), self._count

    def _write(self) -> None:
        for module in self._modules:
            module.p.fill_(self.p)

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "sign_sum": float(self._sign_sum), "count": self._count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._p = float(state["p"])
        self._sign_sum, self._count = float(state["sign_sum"]), int(state["count"])
        self._write()
