"""What a run tells its user: a JSONL log, a progress line, TensorBoard when installed."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .samples import writing


class RunLog:
    """Appends one JSON object per logged step to ``metrics.jsonl``."""

    def __init__(self, path: Path, *, resume_from_step: int | None, note: str | Callable[[], str] = "") -> None:
        """``note`` ends the one-line error a refused write raises (e.g. that checkpoints are intact)."""
        self.path, self.note = path, note
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
        with writing(path.parent / "tensorboard", "TensorBoard logs to", note=note):
            self._tensorboard = _tensorboard_writer(path.parent / "tensorboard")

    def write(self, record: dict[str, Any]) -> None:
        with writing(self.path, "the metrics log", note=self.note):
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        if self._tensorboard is not None:
            step = record["step"]
            for key, value in _flatten(record).items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tensorboard.add_scalar(key, value, step)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


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


def _tensorboard_writer(folder: Path):  # type: ignore[no-untyped-def]
    try:
        import tensorboard  # noqa: F401  (only to learn whether it is installed)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


class Progress:
    """A one-line progress bar on stderr: step, images/s, ETA and the latest losses."""

    def __init__(self, *, total: int, start: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.tty = sys.stderr.isatty()
        self.started = time.perf_counter()
        self.start_step = start

    def update(self, step: int, images_per_s: float, losses: dict[str, float]) -> None:
        if not self.enabled:
            return
        done = step - self.start_step
        elapsed = time.perf_counter() - self.started
        remaining = (self.total - step) * elapsed / done if done > 0 else 0.0
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
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
