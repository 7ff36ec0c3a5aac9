"""A built-in, class-labelled image set drawn from a seed: trains anywhere with no download."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from ...seeds import derive_seed
from ...registry import register


class ProceduralImages:
    """Oriented coloured gratings with a bright blob; the class sets orientation, frequency and palette.

    Item ``i`` depends only on (seed, i), so every worker, rank and resumed run sees the same data.
    """

    def __init__(self, *, resolution: int, channels: int, num_classes: int, size: int, seed: int) -> None:
        self.resolution, self.channels, self.size, self.seed = resolution, channels, size, seed
        self.num_classes = max(num_classes, 1)
        self.labelled = num_classes > 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):  # -> tuple[Tensor, Tensor]
        import torch

        if not 0 <= index < self.size:
            raise IndexError(index)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, index))
        label = index % self.num_classes
        base_angle, freq, palette = class_grating(label, num_classes=self.num_classes, channels=self.channels)
        angle = base_angle + ANGLE_JITTER * float(torch.rand((), generator=gen))
        phase = 2 * math.pi * float(torch.rand((), generator=gen))
        yy, xx = grid(self.resolution)
        wave = torch.sin(math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)) + phase)
        centre = torch.rand(2, generator=gen) * 1.2 - 0.6
        blob = torch.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / 0.08)
        image = WAVE_AMPLITUDE * wave[None] * palette[:, None, None] + 0.8 * blob[None] - 0.2
        return image.clamp(-1, 1), torch.tensor(label if self.labelled else 0)

    def detector(self) -> ProceduralDetector:
        """The analytic feature map for this data's classes (see ``ProceduralDetector``)."""
        return ProceduralDetector(resolution=self.resolution, channels=self.channels, num_classes=self.num_classes)


ANGLE_JITTER = 0.2
"""Radians added at random to each class's grating orientation."""
WAVE_AMPLITUDE = 0.6


def class_grating(label: int, *, num_classes: int, channels: int):  # -> tuple[float, float, Tensor]
    """A class's base orientation (radians), spatial frequency (cycles per image half-width) and colour palette."""
    import torch

    k = label / num_classes
    freq = 1.5 + 3.0 * ((label * 7) % num_classes) / num_classes
    palette = torch.tensor([math.cos(2 * math.pi * (k + c / 3)) for c in range(channels)])
    return math.pi * k, freq, palette


def grid(resolution: int):  # -> tuple[Tensor, Tensor]
    import torch

    axis = torch.linspace(-1.0, 1.0, resolution)
    return torch.meshgrid(axis, axis, indexing="ij")


class ProceduralDetector:
    """Reads back from pixels what drew a procedural image: grating energy per class, phase, blob centre.

    For each class: project the pixels on its palette, remove the mean, correlate with a complex
    grating at its frequency and a few orientations across the jitter range; the magnitude
    (1.0 for a clean grating, phase-invariant) is that class's energy. The phase of the strongest
    class comes as (cos, sin), and the blob centre as the brightness-weighted centroid. Images
    whose class, phase and blob vary as the data's do spread over this space; copies collapse in it.
    Called on (B, C, R, R) images in [-1, 1] it returns (B, classes + 4) float64 features.
    """

    ORIENTATIONS = 4

    def __init__(self, *, resolution: int, channels: int, num_classes: int) -> None:
        self.resolution, self.channels, self.num_classes = resolution, channels, num_classes
        self.description = (f"analytic procedural detector ({num_classes} classes: grating energy, phase, "
                            f"blob centre; no Inception network)")

    def __call__(self, images):  # (B, C, R, R) -> (B, classes + 4) float64
        import torch

        x = images.detach().to("cpu", torch.float32)
        yy, xx = grid(x.shape[-1])
        scale = WAVE_AMPLITUDE * x.shape[-1] ** 2 / 2  # |correlation| of a clean grating
        energies, phasors = [], []
        for label in range(self.num_classes):
            base_angle, freq, palette = class_grating(label, num_classes=self.num_classes, channels=x.shape[1])
            v = torch.einsum("c,nchw->nhw", palette, x) / palette.dot(palette).clamp_min(1e-8)
            v = v - v.mean((1, 2), keepdim=True)
            best = torch.zeros(x.shape[0], dtype=torch.complex64)
            for step in range(self.ORIENTATIONS):
                angle = base_angle + ANGLE_JITTER * (step + 0.5) / self.ORIENTATIONS
                arg = math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle))
                z = torch.complex((v * torch.cos(arg)).sum((1, 2)), (v * torch.sin(arg)).sum((1, 2))) / scale
                best = torch.where(z.abs() > best.abs(), z, best)
            energies.append(best.abs())
            phasors.append(best)
        energy = torch.stack(energies, 1)
        strongest = torch.stack(phasors, 1)[torch.arange(x.shape[0]), energy.argmax(1)]
        phase = strongest / strongest.abs().clamp_min(1e-8)
        weight = (x.mean(1) + 0.2).clamp_min(0)
        weight = weight / weight.sum((1, 2), keepdim=True).clamp_min(1e-8)
        centre = torch.stack([(weight * xx).sum((1, 2)), (weight * yy).sum((1, 2))], 1)
        features = torch.cat([energy.clamp(max=1.5), phase.real[:, None], phase.imag[:, None], centre], 1)
        return features.to(torch.float64)


@register("dataset", "procedural")
def procedural(*, resolution: Annotated[int, Field(ge=4)], channels: Annotated[int, Field(ge=1)] = 3,
               num_classes: Annotated[int, Field(ge=0)] = 10, size: Annotated[int, Field(ge=1)] = 10_000,
               seed: int = 0) -> ProceduralImages:
    """Built-in procedural images at any resolution, class-labelled, generated from ``seed``."""
    return ProceduralImages(resolution=resolution, channels=channels, num_classes=num_classes, size=size, seed=seed)
