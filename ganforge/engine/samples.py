"""Sample grids as PNG files."""

from __future__ import annotations

import math
from pathlib import Path

import torch


def save_grid(images: torch.Tensor, path: Path) -> None:
    """Save images in [-1, 1] as one square-ish grid, written atomically."""
    from torchvision.utils import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.stem + ".tmp.png")
    rows = max(1, int(math.sqrt(images.shape[0])))
    save_image(images.clamp(-1, 1), temporary, nrow=rows, normalize=True, value_range=(-1, 1), padding=1)
    temporary.replace(path)


def save_images(images: torch.Tensor, folder: Path) -> list[Path]:
    """Save each image in [-1, 1] as its own PNG (``000000.png``, ...)."""
    from torchvision.utils import save_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        path = folder / f"{index:06d}.png"
        save_image(image.clamp(-1, 1), path, normalize=True, value_range=(-1, 1))
        paths.append(path)
    return paths
