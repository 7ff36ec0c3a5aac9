"""Every seed ganforge derives from a run's ``--seed``: pure integer arithmetic, no imports.

Seeds are derived from the run's ``--seed`` by folding parts in (``seed * M + part``) with a
few fixed primes. The values are part of what a run *is*: data items, the shuffle order and the
noise stream all follow from them, so a derivation here must never change (checkpoints resume
onto them, and ``tests/test_seeding.py`` pins them).

This module sits below the components (datasets derive their item seeds from it);
``ganforge.engine.seeding`` re-exports every name and adds a process's random streams.
"""

from __future__ import annotations

__all__ = [
    "EPOCH_PRIME", "FIXED_SAMPLES_OFFSET", "ITEM_PRIME", "RANK_PRIME",
    "derive_seed", "epoch_seed", "fixed_samples_seed", "loader_seed", "process_seed", "reseed_for_rank",
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
