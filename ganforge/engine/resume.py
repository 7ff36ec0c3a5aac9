"""``--resume``: find a run's newest readable checkpoint and hand it to the trainer to load."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..errors import GanforgeError
from .checkpoints import CheckpointRecord, list_checkpoints, read_newest_valid


def resume_newest(folder: Path, *, load: Callable[[Path, CheckpointRecord], int], map_location: torch.device,
                  report: Callable[[str], None]) -> int | None:
    """Load the newest valid checkpoint in ``folder`` with ``load(path, record)``; returns its step.

    ``None`` when the folder holds no checkpoint (the run starts from step 0). Newer checkpoints
    that do not load are named on ``report``; when some exist but none loads, the run refuses to
    start over silently.
    """
    found = read_newest_valid(folder, map_location=map_location, report=report)
    if found is None:
        if list_checkpoints(folder):
            raise GanforgeError(f"--resume: none of the checkpoints in {folder} can be read; move them away "
                                "to start this run over")
        report(f"no checkpoint in {folder}: starting from step 0")
        return None
    path, record = found
    step = load(path, record)
    report(f"resumed from {path} at step {step}")
    return step
