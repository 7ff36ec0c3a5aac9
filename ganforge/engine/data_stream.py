"""An endless, resumable stream of batches.

The order is a seeded permutation per epoch, split across ranks, so (epoch, offset) is the
whole state: a resumed run reads exactly the batches the uninterrupted run would have read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import GanforgeError
from .seeding import epoch_seed, loader_seed


class _Slice(Sampler[int]):
    def __init__(self, indices: list[int]) -> None:
        self.indices = indices

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class DataStream:
    """Batches of (images, labels) for one rank, forever; ``state()`` says where it is."""

    dataset: Dataset
    batch_size: int
    seed: int
    rank: int = 0
    world_size: int = 1
    num_workers: int = 0
    pin_memory: bool = False
    epoch: int = 0
    offset: int = 0  # samples of this epoch already consumed by this rank
    # where in this epoch's order the ranks' partition starts: 0, except in the epoch a run resumed into
    # with another number of processes, which shares out what the old ones had not read yet
    start: int = 0
    skipped: int = 0  # unreadable files the dataset replaced so far
    repeat: bool = False  # read one batch, then return it on every call (a benchmark's model step alone)

    def __post_init__(self) -> None:
        from ..contracts import capability

        # a dataset declaring max_skipped yields (image, label, skipped) items (contracts.py)
        self._counts_skipped = capability(self.dataset, "max_skipped", kind="dataset") is not None
        self._iterator: Iterator[Any] | None = None
        self._held: tuple[torch.Tensor, torch.Tensor] | None = None
        per_rank = len(self.dataset) // self.world_size  # type: ignore[arg-type]
        if per_rank < self.batch_size:
            raise GanforgeError(
                f"the dataset has {len(self.dataset)} images, fewer than one micro-batch of {self.batch_size} "  # type: ignore[arg-type]
                f"per process ({self.world_size} process(es)): lower train.batch_size or use more data")
        self.batches_per_epoch = per_rank // self.batch_size

    @property
    def epoch_length(self) -> int:
        """Samples of an epoch read by all ranks together: whole global batches, so the same for any
        number of processes that splits the same global batch."""
        return self.batches_per_epoch * self.batch_size * self.world_size

    def _epoch_indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(len(self.dataset), generator=generator).tolist()  # type: ignore[arg-type]
        mine = order[self.start : self.epoch_length][self.rank :: self.world_size]
        return mine[self.offset :]

    def _start_epoch(self) -> None:
        # The loader's own generator keeps it from drawing on the global RNG (which would shift
        # every later random draw of a resumed run); it also seeds the workers.
        generator = torch.Generator().manual_seed(loader_seed(self.seed, self.epoch, self.offset, self.rank))
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=_Slice(self._epoch_indices()),
                            num_workers=self.num_workers, pin_memory=self.pin_memory, drop_last=True,
                            persistent_workers=False, generator=generator)
        self._iterator = iter(loader)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (images, labels); with ``repeat``, the first batch read, every time (pinned as a loader's)."""
        if self._held is not None:
            return self._held
        if self._iterator is None:
            self._start_epoch()
        try:
            batch = next(self._iterator)  # type: ignore[arg-type]
        except StopIteration:
            self.epoch, self.offset, self.start = self.epoch + 1, 0, 0
            self._start_epoch()
            batch = next(self._iterator)  # type: ignore[arg-type]
        self.offset += self.batch_size
        if self._counts_skipped:  # (image, label, skipped): how many unreadable files it replaced (CPU, no sync)
            self.skipped += int(batch[2].sum())
        if self.repeat:
            images, labels = batch[0], batch[1]
            if self.pin_memory:
                images, labels = images.pin_memory(), labels.pin_memory()
            self._held = (images, labels)
            return self._held
        return batch[0], batch[1]

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset, "skipped": self.skipped, "start": self.start,
                "world_size": self.world_size}

    def restore(self, state: dict[str, int], *, written_by: int | None = None) -> bool:
        """Continue where ``state`` was; True when it was written by another number of processes.

        Then the samples the old ranks had read of this epoch (a prefix of its order: every rank reads
        every world-size-th sample) are skipped, and the rest is shared out over the new ranks: each
        global batch holds the images it would have held without the change. ``written_by`` is the old
        world size for a state that does not record it (before this field).
        """
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self.start = int(state.get("start", 0))
        self.skipped = int(state.get("skipped", 0))
        saved_world = int(state.get("world_size") or written_by or self.world_size)
        moved = saved_world != self.world_size
        if moved:
            self.start, self.offset = self.start + self.offset * saved_world, 0
        if self.start + self.offset * self.world_size >= self.epoch_length:
            self.epoch, self.offset, self.start = self.epoch + 1, 0, 0
        self._iterator = None
        return moved
