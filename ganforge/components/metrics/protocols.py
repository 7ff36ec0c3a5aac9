"""How images reach the Inception network: the FID protocols, by name.

FID moves by several percent with the preprocessing alone (the main job's 16×16 images, 500
against 500: 234.8 with ``legacy``, 216.7 with ``standard``; README, Evaluation), so a number is
comparable with a paper only when the protocol is the same, and every result names it.

- ``standard`` (default): what the TF reference FID code (bioinf-jku/TTUR ``fid.py``) and
  torch-fidelity do. Generated images are quantised to uint8 exactly as a saved PNG
  (``torchvision.utils.save_image``: ``floor(255·x₀₁ + 0.5)``), resized with TF1's bilinear
  sampling (``tf.image.resize_bilinear``, no half-pixel offset; torch-fidelity's
  ``interpolate_bilinear_2d_like_tensorflow1x``, used here, not rewritten), then mapped to the
  graph's input range (x − 128) / 128.
- ``clean``: clean-fid's "clean" mode (Parmar et al. 2022): the same uint8 images, each channel
  resized as a float image with PIL's antialiased bicubic filter and clipped to [0, 255].
- ``legacy``: ganforge 0.1's path, kept so earlier numbers can be reproduced: no rounding, and
  ``F.interpolate`` bilinear (``align_corners=False``, no antialias), pytorch-fid's resize.

Every protocol takes images in [-1, 1] and returns the network's input (B, 3, 299, 299).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from ganforge.errors import GanforgeError

__all__ = ["DEFAULT_PROTOCOL", "PROTOCOLS", "Protocol", "get_protocol", "quantise_like_png", "to_network_range"]

RESOLUTION = 299
DEFAULT_PROTOCOL = "standard"


def quantise_like_png(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images → the uint8 values a saved PNG holds, as float32 in [0, 255].

    The rounding is ``torchvision.utils.save_image``'s (what ``ganforge sample`` writes):
    clamp to [-1, 1], map to [0, 1], then ``floor(255·x + 0.5)``. Real images decoded from
    uint8 files come back to their own bytes, so both sides of FID go through the same path.
    """
    x = images.to(torch.float32).clamp(-1.0, 1.0)
    return ((x + 1.0) / 2.0).mul(255.0).add(0.5).clamp(0.0, 255.0).floor()


def to_network_range(x255: torch.Tensor) -> torch.Tensor:
    """[0, 255] → the TF graph's input range, (x − 128) / 128 ∈ [-1, 0.9921875]."""
    return (x255 - 128.0) / 128.0


def _tf1_bilinear(x255: torch.Tensor) -> torch.Tensor:
    try:
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
    except ImportError:  # a broken install: torch-fidelity is a dependency
        raise GanforgeError("the standard FID protocol needs torch-fidelity (`pip install torch-fidelity`); "
                            "or choose --protocol legacy") from None
    return interpolate_bilinear_2d_like_tensorflow1x(x255, size=(RESOLUTION, RESOLUTION), align_corners=False)


def _pil_bicubic(x255: torch.Tensor) -> torch.Tensor:
    """Each channel as a PIL float image ("F"), bicubic-resized with PIL's antialiasing, clipped to [0, 255]."""
    import numpy as np
    from PIL import Image

    planes = x255.detach().to("cpu", torch.float32).numpy()
    out = np.empty((*planes.shape[:2], RESOLUTION, RESOLUTION), dtype=np.float32)
    for b in range(planes.shape[0]):
        for c in range(planes.shape[1]):
            plane = Image.fromarray(np.ascontiguousarray(planes[b, c]))  # float32 → mode "F"
            plane = plane.resize((RESOLUTION, RESOLUTION), resample=Image.Resampling.BICUBIC)
            out[b, c] = np.asarray(plane)
    return torch.from_numpy(out.clip(0.0, 255.0)).to(x255.device)


def _torch_bilinear(x255: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x255, size=(RESOLUTION, RESOLUTION), mode="bilinear", align_corners=False, antialias=False)


@dataclass(frozen=True)
class Protocol:
    name: str
    quantise: bool
    resize: Callable[[torch.Tensor], torch.Tensor]
    description: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] RGB images (B, 3, H, W) → the network's input (B, 3, 299, 299)."""
        x = images.to(torch.float32)
        x = quantise_like_png(x) if self.quantise else ((x + 1.0) * 127.5).clamp(0.0, 255.0)
        if x.shape[-2:] != (RESOLUTION, RESOLUTION):
            x = self.resize(x)
        return to_network_range(x)


PROTOCOLS: Mapping[str, Protocol] = MappingProxyType({
    "standard": Protocol(
        "standard", True, _tf1_bilinear,
        "standard: images quantised to uint8 as a saved PNG → TF1 bilinear resize to 299×299 "
        "(torch-fidelity's interpolate_bilinear_2d_like_tensorflow1x) → (x − 128)/128; "
        "the TF reference FID code's and torch-fidelity's preprocessing"),
    "clean": Protocol(
        "clean", True, _pil_bicubic,
        "clean: images quantised to uint8 as a saved PNG → PIL bicubic (antialiased) resize of each channel "
        "as a float image to 299×299, clipped to [0, 255] → (x − 128)/128; clean-fid's \"clean\" mode"),
    "legacy": Protocol(
        "legacy", False, _torch_bilinear,
        "legacy: images in [-1, 1] → [0, 255] float, not rounded → bilinear resize to 299×299 "
        "(torch F.interpolate, align_corners=False, no antialias; pytorch-fid's resize) → (x − 128)/128; "
        "ganforge 0.1's preprocessing, not comparable with papers"),
})


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; an unknown one is an error listing the names."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise GanforgeError(f"unknown FID protocol {name!r}; choose one of {', '.join(PROTOCOLS)} "
                            f"(default {DEFAULT_PROTOCOL})") from None
