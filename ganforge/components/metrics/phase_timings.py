"""Where the time of one evaluation goes: generation, feature extraction, the reference, each metric's maths.

``evaluate_generator(..., timings=EvaluationTimings())`` fills one in as it runs (``ganforge
benchmark --evaluation`` reads it), so the phases are timed in the real evaluation path, not in a
copy of it. Wall seconds from ``time.perf_counter``; on CUDA the device is synchronised at each
boundary so that queued work is charged to the phase that queued it. Without timings nothing is
synchronised and nothing is kept.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, ContextManager, Iterable, Iterator

import torch

__all__ = ["EvaluationTimings", "timed", "timed_batches"]


@dataclass
class EvaluationTimings:
    """Seconds per phase name (summed when a phase runs more than once), and the features the metrics saw."""

    seconds: dict[str, float] = field(default_factory=dict)
    real: torch.Tensor | None = None
    real_stats: Any = None
    fake: torch.Tensor | None = None

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    @contextlib.contextmanager
    def phase(self, name: str, *, excluding: str | None = None) -> Iterator[None]:
        """Time the block as ``name``, less what phase ``excluding`` gained inside it (e.g. the
        generator feeding an extraction loop)."""
        _synchronise()
        inner = self.seconds.get(excluding, 0.0) if excluding else 0.0
        start = time.perf_counter()
        try:
            yield
        finally:
            _synchronise()
            gained = self.seconds.get(excluding, 0.0) - inner if excluding else 0.0
            self.add(name, time.perf_counter() - start - gained)

    def batches(self, batches: Iterable[Any], name: str) -> Iterator[Any]:
        """``batches`` as they come, the time spent producing each one added to ``name``."""
        iterator = iter(batches)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            _synchronise()
            self.add(name, time.perf_counter() - start)
            yield batch


def timed(timings: EvaluationTimings | None, name: str, *, excluding: str | None = None) -> ContextManager[None]:
    """``timings.phase(name)``, or nothing at all without timings."""
    return contextlib.nullcontext() if timings is None else timings.phase(name, excluding=excluding)


def timed_batches(timings: EvaluationTimings | None, batches: Iterable[Any], name: str) -> Iterable[Any]:
    return batches if timings is None else timings.batches(batches, name)


def _synchronise() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
