"""A built-in benchmark for long-range structure: distant parts of each image must agree.

SAGAN's claim is that self-attention lets G and D relate far-apart regions that convolutions and
global pooling see only weakly. Here every real image holds two (opposite corners) or four
(all corners) small patches, at least half the image apart, all drawn with the same colour and
shape on a noisy grey background. A generator that models each region on its own draws parts
that disagree; a fixed analytic detector (``LongRangeDetector``, the same rule the images are
drawn with) reads each part's attributes back from pixels, so agreement is measured exactly,
with no Inception network (metrics ``consistency`` and ``combination_coverage``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field

from ...seeds import derive_seed
from ...errors import GanforgeError
from ...registry import register

PALETTE: tuple[tuple[float, float, float], ...] = (
    (1.0, -1.0, -1.0), (-1.0, 1.0, -1.0), (-1.0, -1.0, 1.0),   # red, green, blue
    (1.0, 1.0, -1.0), (1.0, -1.0, 1.0), (-1.0, 1.0, 1.0),      # yellow, magenta, cyan
)
"""Part colours in [-1, 1]; all at the same distance (√3 per pixel) from the grey background 0."""

SHAPES: tuple[str, ...] = ("square", "frame", "plus", "cross")
"""Part shapes: filled square, hollow square, + and ×; masks from ``shape_masks``."""


def shape_masks(size: int, count: int):  # -> Tensor (count, size, size), float 0/1
    """Binary masks of the first ``count`` shapes on a size×size patch."""
    import torch

    i = torch.arange(size)
    row, col = i[:, None].expand(size, size), i[None, :].expand(size, size)
    band = max(1, size // 4)                      # frame width
    lo, hi = (size - max(2, size // 3)) // 2, (size + max(2, size // 3)) // 2  # plus bar [lo, hi)
    masks = [
        torch.ones(size, size),
        ((row < band) | (row >= size - band) | (col < band) | (col >= size - band)).float(),
        (((row >= lo) & (row < hi)) | ((col >= lo) & (col < hi))).float(),
        (((row - col).abs() <= (size // 8)) | ((row + col - (size - 1)).abs() <= (size // 8))).float(),
    ]
    return torch.stack(masks[:count])


def part_origins(*, resolution: int, parts: int, part_size: int, margin: int) -> list[tuple[int, int]]:
    """Top-left (row, col) of each part: opposite corners (2 parts) or all four corners."""
    far = resolution - margin - part_size
    corners = [(margin, margin), (far, far), (margin, far), (far, margin)]
    return corners[:parts]


class LongRangeImages:
    """Images whose ``parts`` distant patches share one (colour, shape); the label is the colour when labelled.

    Item ``i`` depends only on (seed, i). ``render`` draws any per-part attributes, so tests and
    studies can build images whose parts disagree.
    """

    def __init__(self, *, resolution: int, channels: int, num_classes: int, size: int, seed: int, parts: int,
                 colours: int, shapes: int, part_size: int, margin: int, noise: float) -> None:
        if channels != 3:
            raise ValueError(f"long_range draws colour parts and needs channels: 3; got {channels}")
        if num_classes not in (0, colours):
            raise ValueError(f"long_range: num_classes must be 0 (unconditional) or equal colours ({colours}), "
                             f"since the class is the parts' colour; got {num_classes}")
        if part_size + 2 * margin > resolution // 2:
            raise ValueError(f"long_range: part_size + 2·margin = {part_size + 2 * margin} must be at most half the "
                             f"resolution ({resolution // 2}) so that parts are at least half the image apart")
        self.resolution, self.channels, self.size, self.seed = resolution, channels, size, seed
        self.num_classes, self.parts, self.colours, self.shapes = num_classes, parts, colours, shapes
        self.part_size, self.margin, self.noise = part_size, margin, noise
        self.origins = part_origins(resolution=resolution, parts=parts, part_size=part_size, margin=margin)
        self._masks: Any = None   # drawn once, on first use

    @property
    def combinations(self) -> int:
        return self.colours * self.shapes

    def __len__(self) -> int:
        return self.size

    def attributes(self, index: int) -> tuple[int, int]:
        """The (colour, shape) every part of item ``index`` is drawn with."""
        import torch

        gen = torch.Generator().manual_seed(derive_seed(self.seed, index))
        combo = int(torch.randint(self.combinations, (), generator=gen))
        return combo // self.shapes, combo % self.shapes

    def render(self, part_attributes: list[tuple[int, int]], *, generator: Any):  # -> Tensor (3, R, R)
        """An image with part k drawn as ``part_attributes[k]`` = (colour, shape), on grey noise."""
        import torch

        r, p = self.resolution, self.part_size
        if self._masks is None:
            self._masks = shape_masks(p, self.shapes), torch.tensor(PALETTE)[:, :, None, None]
        masks, palette = self._masks
        image = torch.randn(3, r, r, generator=generator) * self.noise
        for (top, left), (colour, shape) in zip(self.origins, part_attributes, strict=True):
            mask = masks[shape]
            paint = palette[colour] * mask
            region = image[:, top:top + p, left:left + p]
            image[:, top:top + p, left:left + p] = region * (1 - mask) + paint + region * mask * 0.5
        return image.clamp(-1, 1)

    def __getitem__(self, index: int):  # -> tuple[Tensor, Tensor]
        import torch

        if not 0 <= index < self.size:
            raise IndexError(index)
        colour, shape = self.attributes(index)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, index))
        gen.manual_seed(int(torch.randint(2**62, (), generator=gen)))   # noise stream apart from attributes
        image = self.render([(colour, shape)] * self.parts, generator=gen)
        return image, torch.tensor(colour if self.num_classes else 0)

    def detector(self) -> LongRangeDetector:
        return LongRangeDetector(origins=self.origins, part_size=self.part_size, colours=self.colours,
                                 shapes=self.shapes)


class LongRangeDetector:
    """Reads each part's (colour, shape) from pixels with the rule the images are drawn with.

    Shape: the mask nearest (least squares) to the part's foreground map, |pixel|/√3 clipped to
    [0, 1] (the background is grey 0, every colour is √3 from it). Colour: the palette colour
    nearest to the mean pixel under that mask. Called on (B, 3, R, R) images it returns (B, parts)
    combination codes colour·shapes + shape, as float64 so it plugs into feature extraction.
    """

    def __init__(self, *, origins: list[tuple[int, int]], part_size: int, colours: int, shapes: int) -> None:
        import torch

        self.origins, self.part_size, self.colours, self.shapes = origins, part_size, colours, shapes
        self.masks = shape_masks(part_size, shapes)
        self.palette = torch.tensor(PALETTE[:colours])
        self.description = (f"analytic long_range detector ({len(origins)} parts of {part_size}×{part_size}, "
                            f"{colours} colours × {shapes} shapes; no Inception network)")

    @property
    def combinations(self) -> int:
        return self.colours * self.shapes

    def __call__(self, images):  # (B, 3, R, R) -> (B, parts) float64
        import torch

        x = images.detach().to("cpu", torch.float32)
        p = self.part_size
        codes = []
        for top, left in self.origins:
            patch = x[:, :, top:top + p, left:left + p]                                  # B, 3, p, p
            fg = (patch.norm(dim=1) / math.sqrt(3)).clamp(0, 1)                         # B, p, p
            err = ((fg[:, None] - self.masks[None]) ** 2).flatten(2).mean(2)             # B, shapes
            shape = err.argmin(dim=1)
            mask = self.masks[shape]                                                     # B, p, p
            mean = (patch * mask[:, None]).flatten(2).sum(2) / mask.flatten(1).sum(1, keepdim=True)  # B, 3
            colour = torch.cdist(mean, self.palette).argmin(dim=1)
            codes.append(colour * self.shapes + shape)
        return torch.stack(codes, dim=1).to(torch.float64)


def detector_for(data: Any, *, metric: str, registry: Any = None) -> LongRangeDetector:
    """The detector for a run's blueprint ``data`` section; a clear error unless it is ``long_range``."""
    from ...registry import default_registry

    registry = default_registry() if registry is None else registry
    if data.type != "long_range":
        raise GanforgeError(f"metric {metric} scores the built-in long_range data and reads its settings from the "
                            f"run's blueprint; this run's data is {data.type!r} (train on data.type: long_range)")
    return registry.get("dataset", "long_range").build(data.component_settings()).detector()


@register("dataset", "long_range")
def long_range(*, resolution: Annotated[int, Field(ge=16)], channels: Annotated[int, Field(ge=1)] = 3,
               num_classes: Annotated[int, Field(ge=0)] = 0, size: Annotated[int, Field(ge=1)] = 10_000,
               seed: int = 0, parts: Literal[2, 4] = 2, colours: Annotated[int, Field(ge=2, le=len(PALETTE))] = 4,
               shapes: Annotated[int, Field(ge=1, le=len(SHAPES))] = 2,
               part_size: Annotated[int, Field(ge=4)] = 8, margin: Annotated[int, Field(ge=0)] = 2,
               noise: Annotated[float, Field(ge=0.0, le=0.3)] = 0.15) -> LongRangeImages:
    """Distant parts that must agree in colour and shape (a long-range benchmark); ``num_classes`` 0 or = colours."""
    return LongRangeImages(resolution=resolution, channels=channels, num_classes=num_classes, size=size, seed=seed,
                           parts=parts, colours=colours, shapes=shapes, part_size=part_size, margin=margin,
                           noise=noise)
