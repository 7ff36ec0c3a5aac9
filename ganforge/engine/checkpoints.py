"""Checkpoints that survive SIGKILL: written to a temporary file, fsynced, then renamed.

Loaded with ``torch.load(weights_only=True)``, so a checkpoint from a stranger cannot run code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import GanforgeError

PATTERN = re.compile(r"^step-(\d{9})\.pt$")
FORMAT = 1


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:09d}.pt"


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], *, keep: int) -> Path:
    """Write ``state`` for ``step`` atomically, then drop all but the newest ``keep``."""
    final = _atomic_save(checkpoint_path(folder, step), state, step=step)
    # Only older steps rotate out: files from later steps (an earlier, longer run) are never touched.
    older = [p for p in list_checkpoints(folder) if step_of(p) < step]
    for old in older[: max(len(older) - (keep - 1), 0)]:
        old.unlink(missing_ok=True)
    return final


def step_of(path: Path) -> int:
    match = PATTERN.match(path.name)
    if match is None:
        raise ValueError(f"{path} is not a step checkpoint")
    return int(match.group(1))


def save_best(folder: Path, state: dict[str, Any], *, step: int) -> Path:
    """Write ``best.pt`` atomically; rotation never touches it."""
    return _atomic_save(folder / "best.pt", state, step=step)


def _atomic_save(final: Path, state: dict[str, Any], *, step: int) -> Path:
    """Temporary file, fsync, rename, fsync the folder: a crash leaves the old file or the new one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(final.name + ".tmp")
    try:
        with open(temporary, "wb") as handle:
            torch.save({**state, "format": FORMAT, "step": step, "complete": True}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    except OSError as err:  # disk full, quota, permissions: earlier checkpoints stay as they were
        temporary.unlink(missing_ok=True)
        raise GanforgeError(f"cannot write checkpoint {final}: {err.strerror or err}; earlier checkpoints "
                            "are intact (free space, then --resume)") from err
    _fsync_dir(final.parent)
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    """Finished checkpoint files, oldest first (temporary files are ignored)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if PATTERN.match(p.name)]
    return sorted(found, key=step_of)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or not state.get("complete") or state.get("format") != FORMAT:
        raise ValueError("not a complete ganforge checkpoint")
    return state


def load_newest_valid(folder: Path, *, map_location: str | torch.device = "cpu",
                      report: Callable[[str], None] = print) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; corrupt or truncated ones are reported and skipped."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path, map_location)
        except Exception as err:  # truncated zip, bad pickle, wrong content: all mean "skip"
            report(f"skipping unreadable checkpoint {path}: {type(err).__name__}: {err}")
    return None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
