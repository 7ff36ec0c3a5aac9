"""How fast a DataLoader delivers a dataset: is the data pipeline or the model the bottleneck?"""

from __future__ import annotations

import statistics
import time
from typing import Any


def measure_loader(dataset: Any, *, batch_size: int, num_workers: int, batches: int, warmup: int = 2,
                   repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """Median batches/s and images/s over ``repeats`` timings of ``batches`` batches, after ``warmup``.

    Indices are drawn at random with replacement (random access, as in training, and never runs
    out on a small set); worker start-up falls in the warm-up. Batches are not moved to a device.
    """
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    if min(batch_size, batches, repeats) < 1 or min(num_workers, warmup) < 0:
        raise ValueError("batch_size, batches and repeats must be >= 1; num_workers and warmup >= 0")
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, replacement=True, num_samples=batch_size * (warmup + batches * repeats),
                            generator=generator)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=True,
                        generator=generator)
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        seconds.append(time.perf_counter() - start)
    del iterator  # stops the workers
    median = statistics.median(seconds)
    return {"batches_per_s": batches / median, "images_per_s": batches * batch_size / median,
            "batch_size": batch_size, "num_workers": num_workers, "batches": batches, "warmup": warmup,
            "repeats": repeats, "seconds": seconds}
