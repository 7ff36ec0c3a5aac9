"""Every seed ganforge derives, and a process's random streams captured and put back.

The derivations themselves live in ``ganforge.seeds`` (below the components, which use them) and
are re-exported here unchanged; this module adds seeding, capturing and restoring the streams.

Nothing here imports torch or numpy at module level (data modules use the derivations at start-up).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Callable

from ..seeds import (  # noqa: F401  (re-exported: the engine's callers import them from here)
    EPOCH_PRIME, FIXED_SAMPLES_OFFSET, ITEM_PRIME, RANK_PRIME, derive_seed, epoch_seed, fixed_samples_seed,
    loader_seed, process_seed, reseed_for_rank,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "capture_rng", "derive_seed", "epoch_seed", "fixed_samples_seed", "loader_seed", "process_seed",
    "reseed_for_rank", "restore_rng", "restore_rank_rng", "seed_everything",
]


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
