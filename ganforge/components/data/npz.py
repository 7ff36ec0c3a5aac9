"""Small image sets stored in one NumPy ``.npz`` file, held in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from ...errors import GanforgeError
from ...registry import register
from .files import open_regular, os_reason


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
    images, labels = _read_arrays(path, images_key=images_key, labels_key=labels_key)
    if images.ndim != 4:
        raise GanforgeError(f"{path}: {images_key!r} must be 4-D (N×H×W×C or N×C×H×W), got shape {images.shape}")
    _check_pixels(path, images, key=images_key)
    if images.shape[1] != channels and images.shape[-1] == channels:
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1:] != (channels, resolution, resolution):
        raise GanforgeError(f"{path}: images are {images.shape[1:]} but the blueprint asks for "
                            f"{(channels, resolution, resolution)} (data.channels, data.resolution)")
    if labels is None:
        labels = np.zeros(len(images), dtype=np.int64)
    else:
        _check_labels(path, labels, key=labels_key, count=len(images), num_classes=num_classes)
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    tensor = tensor.float() / 127.5 - 1.0 if images.dtype == np.uint8 else tensor.float()
    return TensorDataset(tensor, torch.from_numpy(labels.astype(np.int64)))


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip


def _read_arrays(path: Path, *, images_key: str, labels_key: str) -> tuple[Any, Any]:
    """The two arrays of a regular ``.npz`` file (labels None when absent); one clear error otherwise."""
    import zipfile
    import zlib

    import numpy as np

    try:
        handle = open_regular(path)
    except OSError as err:
        reason = "no such file" if isinstance(err, FileNotFoundError) else os_reason(err)
        raise GanforgeError(f"data.root {str(path)!r}: {reason}: set data.root to an .npz file") from None
    with handle:
        start = handle.read(6)
        handle.seek(0)
        if start.startswith(b"\x93NUMPY"):
            raise GanforgeError(f"{path}: a single .npy array, not an .npz archive: write it with "
                                f"np.savez(path, {images_key}=images, {labels_key}=labels)")
        if not start.startswith(ZIP_MAGIC):
            raise GanforgeError(f"{path}: not an .npz file (a zip archive of .npy arrays, as np.savez writes)")
        unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError)
        try:
            archive = np.load(handle, allow_pickle=False)
        except unreadable as err:
            raise GanforgeError(f"{path}: not a readable .npz archive ({type(err).__name__}: {err})") from None
        with archive:
            if images_key not in archive.files:
                raise GanforgeError(f"{path}: no array {images_key!r} (data.images_key); arrays: {archive.files}")
            arrays = []
            for key in (images_key, labels_key):
                if key not in archive.files:
                    arrays.append(None)
                    continue
                try:
                    arrays.append(archive[key])
                except unreadable as err:
                    message = " ".join(str(err).split())[:200]
                    raise GanforgeError(f"{path}: array {key!r} cannot be read ({type(err).__name__}: "
                                        f"{message})") from None
    return arrays[0], arrays[1]


def _check_pixels(path: Path, images: Any, *, key: str) -> None:
    import numpy as np

    if images.dtype == np.uint8:
        return
    if not np.issubdtype(images.dtype, np.floating):
        raise GanforgeError(f"{path}: array {key!r} has dtype {images.dtype}; ganforge reads uint8 (0..255) or "
                            "float (-1..1) images")
    if images.size and not np.isfinite(images).all():
        raise GanforgeError(f"{path}: array {key!r} holds NaN or infinite values")
    low, high = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
    if low < -1.0 - FLOAT_SLACK or high > 1.0 + FLOAT_SLACK:
        raise GanforgeError(f"{path}: array {key!r} has float values in [{low:g}, {high:g}]; float images must "
                            "be in [-1, 1] (or store uint8 0..255)")


FLOAT_SLACK = 1e-3
"""How far float pixels may stray outside [-1, 1] (rounding in whatever wrote them)."""


def _check_labels(path: Path, labels: Any, *, key: str, count: int, num_classes: int) -> None:
    import numpy as np

    if labels.ndim != 1 or len(labels) != count:
        raise GanforgeError(f"{path}: array {key!r} has shape {labels.shape} but there are {count} images: "
                            f"one label per image is needed ({count},)")
    if not (np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_):
        raise GanforgeError(f"{path}: array {key!r} has dtype {labels.dtype}; labels must be integers")
    if num_classes and count:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise GanforgeError(f"{path}: array {key!r} holds label {bad}, outside 0..{num_classes - 1} "
                                f"(data.num_classes is {num_classes})")
