"""Splitting an evaluation across DDP processes, and putting its features back in order.

Every process draws the same latents (cheap) but runs the generator and Inception only on its
own contiguous block of batches; the features are then all-gathered in rank order, so every
process holds exactly the rows one process would have computed, in the same order (KID's
subsets and intra-class FID's labels depend on it). Nothing waits at a barrier for the whole
evaluation, as rank 0 alone did before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Shard", "all_agree", "current_shard", "gather_rows"]


@dataclass(frozen=True)
class Shard:
    """This process's part of an evaluation: rank ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1

    def batch_range(self, items: int, batch_size: int) -> range:
        """The batch indices of ``items`` items in batches of ``batch_size`` that are this process's."""
        batches = math.ceil(items / batch_size)
        per = math.ceil(batches / self.world)
        return range(min(batches, self.rank * per), min(batches, (self.rank + 1) * per))

    def item_count(self, items: int, batch_size: int) -> int:
        """How many of the ``items`` fall in this process's batches."""
        own = self.batch_range(items, batch_size)
        return max(0, min(items, own.stop * batch_size) - own.start * batch_size) if len(own) else 0


def current_shard(sharded: bool) -> Shard:
    """This process's shard when ``sharded`` and a process group of several is running, else the whole job."""
    import torch.distributed as dist

    if not sharded or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return Shard()
    return Shard(rank=dist.get_rank(), world=dist.get_world_size())


def gather_rows(local: torch.Tensor | None, shard: Shard) -> torch.Tensor:
    """Every process's ``local`` rows (N_r, D), concatenated in rank order, on every process (a collective).

    A process with no rows may pass ``None``: width and dtype come from the others.
    """
    if shard.world == 1:
        return local
    import torch.distributed as dist

    shapes: list = [None] * shard.world
    dist.all_gather_object(shapes, None if local is None or local.shape[0] == 0 else
                           (local.shape[0], local.shape[1], str(local.dtype).removeprefix("torch.")))
    known = [s for s in shapes if s is not None]
    sizes = [0 if s is None else s[0] for s in shapes]
    width, dtype = known[0][1], getattr(torch, known[0][2])
    device = _collective_device()
    padded = torch.zeros((max(sizes), width), dtype=dtype, device=device)
    if sizes[shard.rank]:
        padded[: sizes[shard.rank]] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(shard.world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)]).to("cpu" if local is None else local.device)


def all_agree(flag: bool, shard: Shard) -> bool:
    """True on every process when ``flag`` is true on all of them (a collective), e.g. a cache every rank can read."""
    if shard.world == 1:
        return flag
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def _collective_device() -> torch.device:
    """NCCL moves only CUDA tensors; gloo only CPU ones."""
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
