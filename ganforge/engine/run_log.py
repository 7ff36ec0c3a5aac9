"""What a run tells its user: a JSONL log, a progress line, TensorBoard when installed."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import GanforgeError
from .samples import writing
from .run_dir import RunDir


class RunLog:
    """Appends one JSON object per logged step to ``metrics.jsonl``."""

    def __init__(self, path: Path, *, resume_from_step: int | None, note: str | Callable[[], str] = "") -> None:
        """``note`` ends the one-line error a refused write raises (e.g. that checkpoints are intact)."""
        self.path, self.note = path, note
        self._events_failed = False
        with writing(path, "the metrics log", note=note):
            if resume_from_step is not None and path.exists():
                # Entries past the checkpoint describe steps that will be trained again.
                kept = [line for line in path.read_text().splitlines() if _step_of(line) <= resume_from_step]
                temporary = path.with_suffix(".tmp")
                temporary.write_text("".join(line + "\n" for line in kept))
                temporary.replace(path)
            elif resume_from_step is None and path.exists():
                # A run that starts over keeps the old log beside the new one instead of erasing it.
                path.replace(path.with_name(f"{path.stem}.before-{int(time.time())}{path.suffix}"))
        board = RunDir(path.parent).tensorboard
        with writing(board, "TensorBoard logs to", note=note):
            if resume_from_step is None and board.is_dir() and any(board.iterdir()):
                board.replace(board.with_name(f"{board.name}.before-{int(time.time())}"))  # as the log above
            # On resume TensorBoard hides the old events past the checkpoint, as the log drops them.
            self._tensorboard = _tensorboard_writer(board, purge_step=None if resume_from_step is None
                                                    else resume_from_step + 1)
        self._excepthook = threading.excepthook  # put back by close()
        if self._tensorboard is not None:
            threading.excepthook = _quiet_event_writer(self._excepthook)

    def write(self, record: dict[str, Any]) -> None:
        with writing(self.path, "the metrics log", note=self.note):
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        if self._tensorboard is not None:
            step = record["step"]
            with self._writing_events():
                for key, value in _flatten(record).items():
                    if key != "step" and isinstance(value, (int, float)):
                        self._tensorboard.add_scalar(key, value, step)
                self._tensorboard.flush()  # a user watching TensorBoard sees each logged step

    def image_file(self, tag: str, path: Path, step: int) -> None:
        """The PNG at ``path`` (a sample grid just written) as a TensorBoard image; nothing without TensorBoard."""
        if self._tensorboard is None:
            return
        import numpy as np
        from PIL import Image

        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except OSError:  # gone or rewritten meanwhile (another run in this folder): the PNG on disk is the record
            return
        with self._writing_events():
            self._tensorboard.add_image(tag, pixels, step, dataformats="HWC")
            self._tensorboard.flush()

    def close(self) -> None:
        board, self._tensorboard = self._tensorboard, None
        if board is None:
            return
        threading.excepthook = self._excepthook
        failed_before = self._events_failed  # then its writer thread raises the same error again
        in_flight = sys.exc_info()[1] is not None  # closed while an error stops the run: that error is the one line
        try:
            with self._writing_events():
                board.close()
        except GanforgeError:
            if not (failed_before or in_flight):
                raise

    @contextlib.contextmanager
    def _writing_events(self) -> Iterator[None]:
        """TensorBoard's writer thread fails on a full disk, and its next flush raises that: one line, as for the log."""
        try:
            with writing(RunDir(self.path.parent).tensorboard, "TensorBoard logs to", note=self.note):
                yield
        except GanforgeError:
            self._events_failed = True
            raise


def _step_of(line: str) -> float:
    try:
        return json.loads(line).get("step", float("inf"))
    except json.JSONDecodeError:
        return float("inf")


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "/"))
        else:
            out[name] = value
    return out


def _quiet_event_writer(previous: Callable[[Any], None]) -> Callable[[Any], None]:
    """``threading.excepthook`` without the traceback of TensorBoard's event-writer thread failing a write.

    The thread keeps the OSError and the next ``flush`` raises it, which ``RunLog`` turns into one
    line; every other thread's exception goes to ``previous`` as before.
    """
    def hook(args: Any) -> None:
        if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
            return
        previous(args)

    return hook


def _tensorboard_writer(folder: Path, purge_step: int | None = None):  # type: ignore[no-untyped-def]
    try:
        import tensorboard  # noqa: F401  (only to learn whether it is installed)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder), purge_step=purge_step)


class Progress:
    """A one-line progress bar on stderr: step, images/s, ETA and the latest losses.

    The ETA comes from the recent speed: steps per second over the last ``window`` updates of
    this process (never time before a resume). The first interval holds the start-up (data
    workers, compilation, the first step's allocations), so it is left out once a later one exists.
    """

    def __init__(self, *, total: int, start: int, enabled: bool, window: int = 5,
                 clock: Callable[[], float] | None = None) -> None:
        self.total, self.enabled = total, enabled
        self.tty = sys.stderr.isatty()
        self.clock = clock if clock is not None else time.perf_counter
        self.start_step = start
        self.marks: deque[tuple[int, float]] = deque([(start, self.clock())], maxlen=window + 1)
        self.warming = True  # marks[0] is still the start of the run

    def eta(self, step: int) -> float:
        """Seconds left to ``total`` at the recent speed (record ``step`` first with ``mark``)."""
        (first_step, first_time), (last_step, last_time) = self.marks[0], self.marks[-1]
        if last_step <= first_step or last_time <= first_time:
            return 0.0
        return max(self.total - step, 0) * (last_time - first_time) / (last_step - first_step)

    def mark(self, step: int) -> None:
        """Note that ``step`` is done now."""
        if len(self.marks) > 1 and self.marks[-1][0] == step:
            self.marks.pop()
        self.marks.append((step, self.clock()))
        if self.warming and len(self.marks) >= 3:
            self.marks.popleft()  # a later interval exists: forget the start-up one
            self.warming = False

    def update(self, step: int, images_per_s: float, losses: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.mark(step)
        remaining = self.eta(step)
        width = 24
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        text = (f"[{bar}] step {step}/{self.total} | {images_per_s:,.0f} img/s | ETA {_clock(remaining)} | "
                + " ".join(f"{k} {v:.4f}" for k, v in losses.items()))
        sys.stderr.write(("\r" + text) if self.tty else (text + "\n"))
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
