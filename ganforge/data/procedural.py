"""A built-in, class-labelled image set drawn from a seed: trains anywhere with no download."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from ..registry import register


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
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        label = index % self.num_classes
        k = label / self.num_classes
        angle = math.pi * k + 0.2 * float(torch.rand((), generator=gen))
        freq = 1.5 + 3.0 * ((label * 7) % self.num_classes) / self.num_classes
        phase = 2 * math.pi * float(torch.rand((), generator=gen))
        axis = torch.linspace(-1.0, 1.0, self.resolution)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        wave = torch.sin(math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)) + phase)
        centre = torch.rand(2, generator=gen) * 1.2 - 0.6
        blob = torch.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / 0.08)
        palette = torch.tensor([math.cos(2 * math.pi * (k + c / 3)) for c in range(self.channels)])
        image = 0.6 * wave[None] * palette[:, None, None] + 0.8 * blob[None] - 0.2
        return image.clamp(-1, 1), torch.tensor(label if self.labelled else 0)


@register("dataset", "procedural")
def procedural(*, resolution: Annotated[int, Field(ge=4)], channels: Annotated[int, Field(ge=1)] = 3,
               num_classes: Annotated[int, Field(ge=0)] = 10, size: Annotated[int, Field(ge=1)] = 10_000,
               seed: int = 0) -> ProceduralImages:
    """Built-in procedural images at any resolution, class-labelled, generated from ``seed``."""
    return ProceduralImages(resolution=resolution, channels=channels, num_classes=num_classes, size=size, seed=seed)
