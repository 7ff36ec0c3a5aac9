"""Small image sets stored in one NumPy ``.npz`` file, held in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from ...errors import GanforgeError
from ...registry import register


@register("dataset", "npz")
def npz(*, root: str | None = None, resolution: Annotated[int, Field(ge=4)],
        channels: Annotated[int, Field(ge=1)] = 3, num_classes: Annotated[int, Field(ge=0)] = 0,
        images_key: str = "images", labels_key: str = "labels") -> object:
    """Arrays ``images`` (N×H×W×C or N×C×H×W, uint8 or float in [-1, 1]) and optional ``labels`` (N)."""
    import numpy as np
    import torch
    from torch.utils.data import TensorDataset

    if not root:
        raise GanforgeError("data.root is not set: pass --set data.root=/path/to/images.npz")
    path = Path(root).expanduser()
    if not path.is_file():
        raise GanforgeError(f"data.root {root!r} is not a file: set data.root to an .npz file")
    with np.load(path, allow_pickle=False) as archive:
        if images_key not in archive:
            raise GanforgeError(f"{path}: no array {images_key!r} (data.images_key); arrays: {list(archive)}")
        images = archive[images_key]
        labels = archive[labels_key] if labels_key in archive else np.zeros(len(images), dtype=np.int64)
    if images.ndim != 4:
        raise GanforgeError(f"{path}: {images_key!r} must be 4-D (N×H×W×C or N×C×H×W), got shape {images.shape}")
    if images.shape[1] != channels and images.shape[-1] == channels:
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1:] != (channels, resolution, resolution):
        raise GanforgeError(f"{path}: images are {images.shape[1:]} but the blueprint asks for "
                            f"{(channels, resolution, resolution)} (data.channels, data.resolution)")
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    tensor = tensor.float() / 127.5 - 1.0 if images.dtype == np.uint8 else tensor.float()
    return TensorDataset(tensor, torch.from_numpy(labels.astype(np.int64)))
