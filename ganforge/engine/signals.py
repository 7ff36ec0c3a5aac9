"""Ctrl-C, SIGTERM and SIGUSR1 during training: finish the step, checkpoint, stop; a second one stops now.

Cluster schedulers send SIGTERM, or SIGUSR1 (Slurm's ``--signal``), before they preempt a job. A
second signal raises ``KeyboardInterrupt`` wherever the process is, a checkpoint write included:
that write goes to a temporary file renamed only when complete (``durable.replacing``), so it is
lost, never half-kept, and the earlier checkpoints stay as they were.
"""

from __future__ import annotations

import signal
from typing import Any, Callable


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that ask a run to stop: SIGINT, SIGTERM and, where the platform has it, SIGUSR1."""
    usr1 = getattr(signal, "SIGUSR1", None)
    return (signal.SIGINT, signal.SIGTERM) + ((usr1,) if usr1 is not None else ())


class StopRequest:
    """A context that turns SIGINT/SIGTERM/SIGUSR1 into ``requested``; the old handlers come back on exit."""

    def __init__(self, *, describe: Callable[[], str], report: Callable[[str], None]) -> None:
        self.describe, self.report = describe, report
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _request(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        try:
            self.report(f"\n{signal.Signals(signum).name}: {self.describe()}")
        except RuntimeError:  # it interrupted a write to the same stream ("reentrant call"): the stop still holds
            pass

    def __enter__(self) -> "StopRequest":
        for sig in stop_signals():
            try:
                self._previous[sig] = signal.signal(sig, self._request)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
