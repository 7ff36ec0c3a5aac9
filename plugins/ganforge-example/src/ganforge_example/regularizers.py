"""A generator regulariser: a penalty on the mean colour of G's images.

It shows the regulariser contract from G's side: ``network = "generator"`` says the penalty joins
G's loss, and the keyword-only ``__call__(self, *, fake)`` says what it needs (the images of this G
update, with gradients); ganforge passes exactly that. The blueprint's ``every: N`` would make it
lazy with no code here.
"""

from __future__ import annotations

import torch


class ImageMeanPenalty:
    """``weight · mean over channels of (mean_c(fake) - target)²``, added to G's loss.

    ``mean_c(fake)`` is channel c's mean over the batch and all positions. The penalty pulls the
    average colour of G's images toward ``target`` (0: mid-grey for images in [-1, 1]), a guard
    against the slow colour drift of some runs; per-image content is left free.

    Settings:
        weight: the penalty's weight (>= 0).
        target: the mean every channel is pulled toward.
    """

    network = "generator"
    """The penalty joins G's loss (ganforge's ``network`` capability)."""

    def __init__(self, *, weight: float = 1.0, target: float = 0.0) -> None:
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.weight = float(weight)
        self.target = float(target)

    def __call__(self, *, fake: torch.Tensor) -> torch.Tensor:
        if fake.dim() < 2:
            raise ValueError(f"image_mean expects generated images (B, C, ...), got shape {tuple(fake.shape)}")
        channel_means = fake.float().transpose(0, 1).flatten(1).mean(dim=1)  # (C,)
        return self.weight * (channel_means - self.target).square().mean()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weight={self.weight}, target={self.target})"
