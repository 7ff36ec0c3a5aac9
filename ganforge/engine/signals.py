"""Ctrl-C and SIGTERM during training: finish the step, checkpoint, stop; a second one stops now."""

from __future__ import annotations

import signal
from typing import Any, Callable


class StopRequest:
    """A context that turns SIGINT/SIGTERM into ``requested``; the old handlers come back on exit."""

    def __init__(self, *, describe: Callable[[], str], report: Callable[[str], None]) -> None:
        self.describe, self.report = describe, report
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _request(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        self.report(f"\n{signal.Signals(signum).name}: {self.describe()}")

    def __enter__(self) -> "StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._request)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
