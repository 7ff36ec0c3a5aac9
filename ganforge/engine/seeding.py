"""Every seed ganforge derives, and a process's random streams captured and put back.

Seeds are derived from the run's ``--seed`` by folding parts in (``seed * M + part``) with a
few fixed primes. The values are part of what a run *is*: data items, the shuffle order and the
noise stream all follow from them, so a derivation here must never change (checkpoints resume
onto them, and ``tests/test_seeding.py`` pins them).

Nothing here imports torch or numpy at module level (data modules use the derivations at start-up).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

__all__ = [
    "capture_rng", "derive_seed", "epoch_seed", "fixed_samples_seed", "loader_seed", "process_seed",
    "reseed_for_rank", "restore_rng", "restore_rank_rng", "seed_everything",
]

ITEM_PRIME = 1_000_003  # folds an index (item, rank, offset) into a seed
EPOCH_PRIME = 7919  # folds an epoch (or a rank, when reseeding) into a seed
RANK_PRIME = 131  # folds a rank into a data loader's seed
FIXED_SAMPLES_OFFSET = 12345  # the fixed sample grid's latents, apart from every training stream


def _fold(seed: int, multiplier: int, part: int) -> int:
    return seed * multiplier + part


# -- derivations ---------------------------------------------------------------------------
def derive_seed(base: int, *parts: int) -> int:
    """``base`` with each part folded in as ``seed * 1_000_003 + part``.

    ``derive_seed(seed, index)`` seeds data item ``index``; ``derive_seed(seed, rank)`` a rank's
    noise stream.
    """
    seed = base
    for part in parts:
        seed = _fold(seed, ITEM_PRIME, part)
    return seed


def process_seed(seed: int, rank: int) -> int:
    """The global (python, numpy, torch) streams of process ``rank``."""
    return seed + rank


def epoch_seed(seed: int, epoch: int) -> int:
    """The data order (a permutation of the dataset) of one epoch."""
    return _fold(seed, EPOCH_PRIME, epoch)


def loader_seed(seed: int, epoch: int, offset: int, rank: int) -> int:
    """A rank's data loader started at ``offset`` into ``epoch`` (it also seeds the workers)."""
    return _fold(derive_seed(epoch_seed(seed, epoch), offset), RANK_PRIME, rank)


def reseed_for_rank(seed: int, rank: int, step: int) -> int:
    """Fresh streams for ``rank`` at ``step``, when a checkpoint has no state for this rank."""
    return _fold(seed, ITEM_PRIME, _fold(rank, EPOCH_PRIME, step))


def fixed_samples_seed(seed: int) -> int:
    """The latents of the sample grid written during training."""
    return seed + FIXED_SAMPLES_OFFSET


# -- a process's random streams ----------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global streams."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng(noise: torch.Generator, cuda_device: torch.device | None = None) -> dict[str, Any]:
    """This process's random streams as plain lists (gatherable across ranks, safe to unpickle).

    ``noise`` is the trainer's own latent stream; ``cuda_device`` the device whose CUDA stream to
    keep (``None`` on CPU).
    """
    import numpy as np
    import torch

    np_state = np.random.get_state()
    return {
        "python": _python_state_to_lists(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state().tolist(),
        "cuda": torch.cuda.get_rng_state(cuda_device).tolist() if cuda_device is not None else None,
        "noise": noise.get_state().tolist(),
    }


def restore_rng(rng: dict[str, Any], noise: torch.Generator, cuda_device: torch.device | None = None) -> None:
    """Put back what ``capture_rng`` returned (the CUDA stream only where both sides have one)."""
    import numpy as np
    import torch

    random.setstate(_python_state_from_lists(rng["python"]))
    name, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
    if cuda_device is not None and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(torch.tensor(rng["cuda"], dtype=torch.uint8), cuda_device)
    noise.set_state(torch.tensor(rng["noise"], dtype=torch.uint8))


def restore_rank_rng(rng_by_rank: list[dict[str, Any]], *, rank: int, world_size: int, seed: int, step: int,
                     noise: torch.Generator, cuda_device: torch.device | None, source: object,
                     report: Callable[[str], None]) -> None:
    """Rank ``rank``'s streams from a checkpoint's per-rank states.

    Written by a different number of processes, the checkpoint cannot give every rank its own
    stream back: each is reseeded from (seed, rank, step) instead, and ``report`` says so.
    """
    if len(rng_by_rank) == world_size:
        restore_rng(rng_by_rank[rank], noise, cuda_device)
        return
    report(f"{source} was written by {len(rng_by_rank)} process(es), this run has "
           f"{world_size}: random streams are reseeded from (seed, rank, step)")
    fresh = reseed_for_rank(seed, rank, step)
    seed_everything(fresh)
    noise.manual_seed(fresh)


def _python_state_to_lists(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_from_lists(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
