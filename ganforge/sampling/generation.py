"""Drawing images from a trained generator: latents, classes, truncation, batching."""

from __future__ import annotations

from typing import Iterator

import torch

from ..assembly import Network
from .latents import (  # noqa: F401  (re-exported: callers import them from here)
    class_labels, column_classes, conditioning_labels, latent_batches, latents,
)

@torch.no_grad()
def generate(network: Network, *, n: int, latent_dim: int, num_classes: int, batch_size: int = 64,
             seed: int = 0, class_index: int | None = None, truncation: float | None = None,
             device: torch.device | str = "cpu", columns: int | None = None) -> Iterator[torch.Tensor]:
    """Batches of images in [-1, 1] (float32, on ``device``); the same seed gives the same images.

    Classes are uniform random (``class_index`` fixes one); ``columns`` gives one class per column
    of a grid that wide instead (``sample``'s grid).
    """
    for z, labels in latent_batches(n=n, latent_dim=latent_dim, num_classes=num_classes, batch_size=batch_size,
                                    seed=seed, class_index=class_index, truncation=truncation, device=device,
                                    columns=columns):
        yield network(z, labels).float()
