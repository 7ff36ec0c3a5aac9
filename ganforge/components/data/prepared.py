"""Images written once by ``ganforge prepare``: memory-mapped uint8 shards, no decoding at train time."""

from __future__ import annotations

import operator
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Sequence

from pydantic import Field

from ...errors import GanforgeError
from ...registry import register
from .manifest import Manifest, ShardEntry, read_manifest
from .shardfile import Expected, ShardError, Signature, map_array


class PreparedImages:
    """Items ``(image float32 C×H×W in [-1, 1], label int64)``, like ``imagefolder`` without skips.

    Shards are memory-mapped on first use in each process (the object pickles without them, so
    DataLoader workers open their own). Flips draw one ``torch.rand(1)`` per item from the global
    RNG, as torchvision's ``RandomHorizontalFlip`` does, so a checkpoint's RNG state replays them.

    ``check()`` (the builder calls it) maps every shard once and verifies sizes, hashes and labels;
    the signatures of the files it verified travel with the pickled object, so a worker re-checks
    (and re-hashes) only a file that changed since.
    """

    def __init__(self, *, folder: Path, shards: list[ShardEntry], classes: list[str],
                 shape: tuple[int, int, int], flip: bool, verify: bool = True) -> None:
        import numpy as np

        self.folder, self.shards, self.classes, self.shape, self.flip = folder, shards, classes, shape, flip
        self.verify = verify
        self.offsets = np.cumsum([0] + [shard.count for shard in shards])
        self.verified: dict[int, tuple[Signature, Signature]] = {}
        self._open: dict[int, tuple[Any, Any]] = {}

    def check(self, *, threads: int | None = None) -> None:
        """Map and verify every shard now (hashing in a few threads: hashlib releases the GIL)."""
        from concurrent.futures import ThreadPoolExecutor

        threads = max(1, min(len(self.shards), threads or min(8, os.cpu_count() or 1)))
        if threads == 1:
            for index in range(len(self.shards)):
                self._shard(index)
            return
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(self._shard, range(len(self.shards))))  # raises the first failing shard's error

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
            entry = self.shards[index]
            before = self.verified.get(index, (None, None))
            images, image_signature = map_array(self._expected(entry, "images"), verify=self.verify,
                                                verified=before[0])
            labels, label_signature = map_array(self._expected(entry, "labels"), verify=self.verify,
                                                verified=before[1])
            if label_signature != before[1]:
                self._check_labels(entry, labels)
            self.verified[index] = (image_signature, label_signature)
            self._open[index] = (images, labels)
        return self._open[index]

    def _expected(self, entry: ShardEntry, which: str) -> Expected:
        shape = (entry.count, *self.shape) if which == "images" else (entry.count,)
        return Expected(path=self.folder / getattr(entry, which), dtype="uint8" if which == "images" else "int64",
                        shape=shape, size=getattr(entry, f"{which}_bytes"), sha256=getattr(entry, f"{which}_sha256"))

    def _check_labels(self, entry: ShardEntry, labels: Any) -> None:
        if not len(labels):
            return
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= len(self.classes):
            raise ShardError(f"{self.folder / entry.labels}: holds label {low if low < 0 else high}, outside "
                             f"0..{len(self.classes) - 1} (the manifest lists {len(self.classes)} classes); rerun "
                             "`ganforge prepare`")


@register("dataset", "prepared")
def prepared(*, root: str | None = None, resolution: Annotated[int, Field(ge=4)],
             channels: Annotated[int, Field(ge=1, le=4)] = 3, num_classes: Annotated[int, Field(ge=0)] = 0,
             flip: bool = True, verify: bool = True) -> PreparedImages:
    """A folder written by ``ganforge prepare``, memory-mapped: fast loading (images in [-1, 1]).

    Resolution, channels and (when set) the class count must match what was prepared. Every shard's
    size is checked and, with ``verify`` (default), its SHA-256 once per process (about 1 s per GB
    and core, in up to 8 threads); ``verify: false`` skips the hashes of a very large set.
    """
    if not root:
        raise GanforgeError("data.root is not set: pass --set data.root=/path/to/prepared "
                            "(a folder written by `ganforge prepare`)")
    folder = Path(root).expanduser()
    manifest = read_manifest(folder)
    where = f"data.root {root!r}"
    for key, wanted in (("resolution", resolution), ("channels", channels)):
        prepared_with = getattr(manifest, key)
        if prepared_with != wanted:
            raise GanforgeError(f"{where} was prepared with {key} {_shown(prepared_with, wanted)} but data.{key} is "
                                f"{_shown(wanted, prepared_with)}: set data.{key}: {prepared_with} or rerun "
                                f"`ganforge prepare --{key} {wanted}`")
    if num_classes and len(manifest.classes) != num_classes:
        raise GanforgeError(f"{where} has {len(manifest.classes)} classes but data.num_classes is {num_classes}")
    if not num_classes and len(manifest.classes) > 1:  # e.g. --set data.type=prepared replaced num_classes
        print(f"warning: {where} holds {len(manifest.classes)} classes but data.num_classes is 0: the labels are "
              f"ignored and the model is unconditional (set data.num_classes: {len(manifest.classes)} for a "
              "class-conditional one)", file=sys.stderr)
    if verify and not all(shard.checksummed for shard in manifest.shards):
        print(f"warning: {folder / 'manifest.json'} records no shard checksums (written before they were added): "
              "sizes are checked, contents are not; rerun the same `ganforge prepare` command to add them",
              file=sys.stderr)
    data = PreparedImages(folder=folder, shards=list(manifest.shards), classes=list(manifest.classes),
                          shape=(channels, resolution, resolution), flip=flip, verify=verify)
    data.check()
    return data


def _shown(value: Any, other: Any) -> str:
    """``value`` as written, with its type when ``other``'s differs (so "16" and 16 do not read alike)."""
    return f"{value!r} ({type(value).__name__})" if type(value) is not type(other) else str(value)


__all__ = ["Manifest", "PreparedImages", "prepared", "read_manifest"]
