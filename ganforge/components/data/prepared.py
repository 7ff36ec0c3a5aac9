"""Images written once by ``ganforge prepare``: memory-mapped uint8 shards, no decoding at train time."""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Annotated, Any, Sequence

from pydantic import Field

from ...errors import GanforgeError
from ...registry import register
from .prepare import FORMAT, MANIFEST, VERSION


class PreparedImages:
    """Items ``(image float32 C×H×W in [-1, 1], label int64)``, like ``imagefolder`` without skips.

    Shards are memory-mapped on first use in each process (the object pickles without them, so
    DataLoader workers open their own). Flips draw one ``torch.rand(1)`` per item from the global
    RNG, as torchvision's ``RandomHorizontalFlip`` does, so a checkpoint's RNG state replays them.
    """

    def __init__(self, *, folder: Path, shards: list[tuple[str, str, int]], classes: list[str],
                 shape: tuple[int, int, int], flip: bool) -> None:
        import numpy as np

        self.folder, self.shards, self.classes, self.shape, self.flip = folder, shards, classes, shape, flip
        self.offsets = np.cumsum([0] + [count for _, _, count in shards])
        self._open: dict[int, tuple[Any, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": {}}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = operator.index(index)
        if index < 0:
            index += len(self)
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any]]:
        """A whole batch with one fancy index per shard (torch's DataLoader calls this when present)."""
        import numpy as np
        import torch

        images, labels = self._gather(np.asarray(indices, dtype=np.int64).reshape(-1))
        if self.flip:  # torch.rand(n) draws what n calls of torch.rand(1) would (tested)
            flips = (torch.rand(len(images)) < 0.5).numpy()
            images[flips] = images[flips, :, :, ::-1]
        pixels = torch.from_numpy(images)
        # Per item, (x / 127.5 - 1) in place: one float batch would be a fresh 50 MB allocation that
        # page-faults on every call, and the DataLoader's collate copies the items once more anyway.
        return [(pixels[k].float().div_(127.5).sub_(1.0), label) for k, label in
                enumerate(torch.from_numpy(labels).unbind(0))]

    def _gather(self, indices: Any) -> tuple[Any, Any]:
        import numpy as np

        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        shard_of = np.searchsorted(self.offsets, indices, side="right") - 1
        images = np.empty((len(indices), *self.shape), dtype=np.uint8)
        labels = np.empty(len(indices), dtype=np.int64)
        for shard in np.unique(shard_of):
            rows = np.flatnonzero(shard_of == shard)
            local = indices[rows] - self.offsets[shard]
            shard_images, shard_labels = self._shard(int(shard))
            images[rows] = shard_images[local]
            labels[rows] = shard_labels[local]
        return images, labels

    def _shard(self, index: int) -> tuple[Any, Any]:
        if index not in self._open:
            import numpy as np

            image_name, label_name, _ = self.shards[index]
            self._open[index] = (np.load(self.folder / image_name, mmap_mode="r").view(np.ndarray),
                                 np.load(self.folder / label_name, mmap_mode="r").view(np.ndarray))
        return self._open[index]


@register("dataset", "prepared")
def prepared(*, root: str | None = None, resolution: Annotated[int, Field(ge=4)],
             channels: Annotated[int, Field(ge=1, le=4)] = 3, num_classes: Annotated[int, Field(ge=0)] = 0,
             flip: bool = True) -> PreparedImages:
    """A folder written by ``ganforge prepare``, memory-mapped: fast loading (images in [-1, 1]).

    Resolution, channels and (when set) the class count must match what was prepared.
    """
    if not root:
        raise GanforgeError("data.root is not set: pass --set data.root=/path/to/prepared "
                            "(a folder written by `ganforge prepare`)")
    folder = Path(root).expanduser()
    manifest = read_manifest(folder)
    where = f"data.root {root!r}"
    for key, wanted in (("resolution", resolution), ("channels", channels)):
        if manifest[key] != wanted:
            raise GanforgeError(f"{where} was prepared with {key} {manifest[key]} but data.{key} is {wanted}: "
                                f"set data.{key}: {manifest[key]} or rerun `ganforge prepare --{key} {wanted}`")
    if num_classes and len(manifest["classes"]) != num_classes:
        raise GanforgeError(f"{where} has {len(manifest['classes'])} classes but data.num_classes is {num_classes}")
    shards = [(s["images"], s["labels"], int(s["count"])) for s in manifest["shards"]]
    shape = (channels, resolution, resolution)
    _check_shards(folder, shards, shape)
    return PreparedImages(folder=folder, shards=shards, classes=list(manifest["classes"]), shape=shape, flip=flip)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a prepared folder; a clear error when it is missing, unfinished or foreign."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise GanforgeError(f"data.root {str(folder)!r} is not a directory: run `ganforge prepare DATA_ROOT "
                            f"--resolution R --out {folder}` first")
    if not path.is_file():
        raise GanforgeError(f"{path} is missing: the folder was not written by `ganforge prepare`, or that run "
                            "was interrupted (rerun the same command to finish it)")
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}, not {FORMAT!r}")
        if manifest.get("version") != VERSION:
            raise ValueError(f"version {manifest.get('version')!r}; this ganforge reads version {VERSION}: "
                             "rerun `ganforge prepare` into a new folder")
        for key in ("resolution", "channels", "classes", "shards"):
            if key not in manifest:
                raise ValueError(f"no {key!r}")
    except (OSError, ValueError, AttributeError) as err:
        raise GanforgeError(f"{path}: not a readable ganforge manifest ({err})") from None
    return manifest


def _check_shards(folder: Path, shards: list[tuple[str, str, int]], shape: tuple[int, int, int]) -> None:
    import numpy as np

    for image_name, label_name, count in shards:
        try:
            images = np.load(folder / image_name, mmap_mode="r")
            labels = np.load(folder / label_name, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise GanforgeError(f"{folder / image_name}: cannot be read ({err}); rerun `ganforge prepare`") from None
        if images.shape != (count, *shape) or images.dtype != np.uint8 or labels.shape != (count,):
            raise GanforgeError(f"{folder / image_name}: shape {images.shape} {images.dtype} does not match the "
                                f"manifest ({count}×{'×'.join(map(str, shape))} uint8)")
