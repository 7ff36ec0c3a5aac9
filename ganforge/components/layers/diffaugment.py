"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

With little data D memorises the training set and its feedback to G collapses. Augmenting only
the real images would teach G to draw augmented images; DiffAugment instead augments every image
D sees, real and generated, in both D's and G's updates, with operations that are differentiable
so G's gradient flows back through them. Placed first in D's stack, this layer does exactly that:
each image D scores, from whichever update, goes through it.

The operations follow ``DiffAugment_pytorch.py`` of mit-han-lab/data-efficient-gans (commit
0b6339510be1e3859d360cbf464d0a425514a6b4, read for this file; written anew here, not copied).
The functions below take their random parameters explicitly; the layer draws them, per image,
from torch's global generator (which the engine seeds and checkpoints), in the reference's order
and shapes, so a seeded run draws the same parameters as the reference would.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from ganforge.registry import register

__all__ = ["DiffAugment", "brightness", "contrast", "cutout", "saturation", "translate"]

POLICY_NAMES = ("color", "translation", "cutout")
"""The reference's ``AUGMENT_FNS`` keys (``DiffAugment_pytorch.py`` lines 72-76)."""

_POLICY_PATTERN = r"^(color|translation|cutout)(,(color|translation|cutout))*$"


# ---------------------------------------------------------------------------------------------
# The operations, with explicit parameters (one value per image: tensors broadcastable to (B,1,1,1))
# ---------------------------------------------------------------------------------------------


def brightness(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Adds ``shift`` (drawn uniform in [-0.5, 0.5)) to every pixel and channel.

    Reference: ``rand_brightness``, ``DiffAugment_pytorch.py`` lines 22-24.
    """
    return x + shift


def saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scales each pixel's deviation from its own mean over channels by ``factor`` (drawn uniform in [0, 2)).

    Reference: ``rand_saturation``, ``DiffAugment_pytorch.py`` lines 27-30 (mean over dim 1).
    """
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * factor + mean


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scales each image's deviation from its own mean (over channels and positions) by ``factor``
    (drawn uniform in [0.5, 1.5)). The mean is per image, so no image depends on the others.

    Reference: ``rand_contrast``, ``DiffAugment_pytorch.py`` lines 33-36.
    """
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


def translate(x: torch.Tensor, shift_h: torch.Tensor, shift_w: torch.Tensor, *,
              reach: tuple[int, int] | None = None) -> torch.Tensor:
    """``out[b, :, i, j] = x[b, :, i + shift_h[b], j + shift_w[b]]``, zero where that falls outside.

    ``shift_h``/``shift_w`` are integer tensors of B elements, at most ``reach`` (rows, columns) in
    magnitude (default: the image's sides less one, beyond which only zeros remain; the cost grows
    with it, so the layer passes the largest shift it draws; an image shifted further is all zeros).
    Reference: ``rand_translation``, ``DiffAugment_pytorch.py`` lines 39-52: the index ``i + t + 1``
    into a 1-pixel zero-padded image, clamped to the padding (lines 48-50), reads zero for every
    position shifted out.
    Written as a selection among the fixed shifts, so it is exact in any dtype (no matrix product
    under autocast or TF32) and its backward has no scatter (deterministic on every device).
    """
    reach_h, reach_w = reach if reach is not None else (x.shape[2] - 1, x.shape[3] - 1)
    x = _shift(x, shift_h, dim=2, reach=min(reach_h, x.shape[2] - 1))
    return _shift(x, shift_w, dim=3, reach=min(reach_w, x.shape[3] - 1))


def _shift(x: torch.Tensor, shift: torch.Tensor, *, dim: int, reach: int) -> torch.Tensor:
    """``x`` moved by ``shift[b]`` along ``dim``, zeros shifted in; an image shifted beyond ``reach`` is all zeros."""
    size = x.shape[dim]
    shift = shift.reshape(-1, 1, 1, 1)
    pad = [0, 0, reach, reach] if dim == 2 else [reach, reach, 0, 0]
    padded = F.pad(x, pad)
    out = torch.zeros_like(x)
    for k in range(-reach, reach + 1):
        out = torch.where(shift == k, padded.narrow(dim, reach + k, size), out)
    return out


def cutout(x: torch.Tensor, centre_h: torch.Tensor, centre_w: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zeroes a ``size[0]`` × ``size[1]`` rectangle of each image, rows from ``centre_h - size[0] // 2``
    (columns likewise), clipped to the image.

    Reference: ``rand_cutout``, ``DiffAugment_pytorch.py`` lines 55-69: the rectangle's rows are
    ``offset - size // 2 + arange(size)`` clamped to the image (line 64), i.e. its intersection
    with the image. Built from comparisons rather than index writes, so it runs on the meta device.
    """
    rows = torch.arange(x.shape[2], device=x.device).reshape(1, 1, -1, 1)
    cols = torch.arange(x.shape[3], device=x.device).reshape(1, 1, 1, -1)
    top = centre_h.reshape(-1, 1, 1, 1) - size[0] // 2
    left = centre_w.reshape(-1, 1, 1, 1) - size[1] // 2
    hole = (rows >= top) & (rows < top + size[0]) & (cols >= left) & (cols < left + size[1])
    return torch.where(hole, torch.zeros((), dtype=x.dtype, device=x.device), x)


# ---------------------------------------------------------------------------------------------
# The layer
# ---------------------------------------------------------------------------------------------


@register("layer", "diff_augment")
class DiffAugment(nn.Module):
    """Differentiable augmentation of every image D sees (training mode only; identity in eval mode).

    ``policy`` lists, comma separated and applied in that order, the reference's groups:
    ``color`` (brightness, saturation, contrast), ``translation`` (by up to ``translation_ratio``
    of each side, zero padding) and ``cutout`` (a square of ``cutout_ratio`` of each side). Put it
    first in the discriminator so every image is augmented before D looks at it; G's gradient
    flows through it. Parameters are drawn per image: a joint real-and-generated pass draws for
    the concatenated batch, which gives each image the same distribution as separate passes.
    """

    def __init__(self, *, policy: Annotated[str, Field(pattern=_POLICY_PATTERN)] = "color,translation,cutout",
                 translation_ratio: Annotated[float, Field(ge=0, le=1)] = 0.125,
                 cutout_ratio: Annotated[float, Field(ge=0, le=1)] = 0.5, in_channels: int | None = None) -> None:
        super().__init__()
        self.in_channels = in_channels  # from the assembler: this layer takes images, of these channels
        names = policy.split(",")
        unknown = [name for name in names if name not in POLICY_NAMES]
        if unknown:
            raise ValueError(f"unknown DiffAugment policy {', '.join(map(repr, unknown))}; "
                             f"policy is a comma-separated list of {', '.join(POLICY_NAMES)}")
        self.policy, self.translation_ratio, self.cutout_ratio = tuple(names), translation_ratio, cutout_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.in_channels, "diff_augment")
        if not self.training:
            return x
        for name in self.policy:
            x = getattr(self, f"_{name}")(x)
        return x

    # Each draws its parameters as the reference does (same calls, shapes and order), then applies them.
    def _color(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = brightness(x, torch.rand(n, 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)   # ref. line 23
        x = saturation(x, torch.rand(n, 1, 1, 1, dtype=x.dtype, device=x.device) * 2)     # ref. line 29
        return contrast(x, torch.rand(n, 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5)  # ref. line 35

    def _translation(self, x: torch.Tensor) -> torch.Tensor:
        reach_h, reach_w = _fraction(x.shape[2], self.translation_ratio), _fraction(x.shape[3], self.translation_ratio)
        shift_h = torch.randint(-reach_h, reach_h + 1, size=[x.shape[0], 1, 1], device=x.device)  # ref. line 41
        shift_w = torch.randint(-reach_w, reach_w + 1, size=[x.shape[0], 1, 1], device=x.device)  # ref. line 42
        return translate(x, shift_h, shift_w, reach=(reach_h, reach_w))

    def _cutout(self, x: torch.Tensor) -> torch.Tensor:
        size = _fraction(x.shape[2], self.cutout_ratio), _fraction(x.shape[3], self.cutout_ratio)       # ref. line 56
        # An even-sized hole may be centred one past the last row, as in the reference (lines 57-58).
        centre_h = torch.randint(0, x.shape[2] + (1 - size[0] % 2), size=[x.shape[0], 1, 1], device=x.device)
        centre_w = torch.randint(0, x.shape[3] + (1 - size[1] % 2), size=[x.shape[0], 1, 1], device=x.device)
        return cutout(x, centre_h, centre_w, size)

    def extra_repr(self) -> str:
        return (f"policy={','.join(self.policy)}, translation_ratio={self.translation_ratio}, "
                f"cutout_ratio={self.cutout_ratio}")


def _fraction(side: int, ratio: float) -> int:
    """``ratio`` of a side in whole pixels, rounded half up (reference lines 40 and 56: ``int(s * r + 0.5)``)."""
    return int(side * ratio + 0.5)


def check_image_batch(x: torch.Tensor, in_channels: int | None, name: str) -> None:
    """Refuses anything but a (B, C, H, W) batch of the channels the assembler said (an augmenter placed after a
    block or a flatten would otherwise fail with an indexing error, or silently augment feature maps)."""
    if x.ndim != 4 or (in_channels is not None and x.shape[1] != in_channels):
        raise ValueError(f"{name} augments images (B, {in_channels or 'C'}, H, W), not {tuple(x.shape)}")
