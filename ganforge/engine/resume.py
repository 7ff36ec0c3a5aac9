"""``--resume``: find a run's newest readable checkpoint and hand it to the trainer to load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import GanforgeError, join_path
from .checkpoints import CheckpointRecord, list_checkpoints, list_unfinished, read_newest_valid
from .checksums import recorded_checksum


def resume_newest(folder: Path, *, load: Callable[[Path, CheckpointRecord], int], map_location: torch.device,
                  report: Callable[[str], None], agree: Callable[[str], None] = lambda found: None) -> int | None:
    """Load the newest valid checkpoint in ``folder`` with ``load(path, record)``; returns its step.

    ``None`` when the folder holds no checkpoint (the run starts from step 0). Newer checkpoints
    that do not load are named on ``report``; when some exist but none loads, the run refuses to
    start over silently. ``agree(what)`` hears what this process found before anything loads: under
    DDP every rank must have found the same checkpoint, or the replicas would start from other weights.
    """
    skipped: list[str] = []  # said once the outcome is known: one warning each, or all in the one error
    found = read_newest_valid(folder, map_location=map_location, report=skipped.append)
    agree(_found(folder, found))
    if found is None:
        refuse_incomplete(folder, skipped, report=report)
        report(f"no checkpoint in {folder}: starting from step 0")
        return None
    path, record = found
    for message in skipped:
        report(f"warning: {message}; using {path.name}" if message.startswith("skipping") else message)
    step = load(path, record)
    report(f"resumed from {path} at step {step}")
    return step


def check_fits(path: Path, record: CheckpointRecord, *, blueprint: dict[str, Any],
               networks: dict[str, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]]) -> None:
    """Refuse, in one line, a checkpoint whose weights this run's networks cannot take.

    ``networks`` maps a role to (this run's ``state_dict()``, the checkpoint's); the line names the
    first parameter that is missing, extra or of another shape, and the first blueprint key that
    differs from the one the checkpoint was written with (``blueprint``: this run's document).
    """
    for role, (ours, theirs) in networks.items():
        if theirs is None:
            continue
        problem = _first_misfit(ours, theirs)
        if problem is None:
            continue
        section = "discriminator" if role == "discriminator" else "generator"  # the EMA copy is a generator
        saved_document = record.blueprint if isinstance(record.blueprint, dict) else {}
        changed = (_first_difference(saved_document.get(section), blueprint.get(section), section)
                   or _first_difference(saved_document, blueprint))
        because = f"; the blueprint differs at {changed}" if changed else ""
        raise GanforgeError(f"--resume: {path} does not fit this blueprint's {role}: {role}.{problem}{because} "
                            "(resume with the blueprint it was trained with, or train into a new --out)")


def _first_misfit(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> str | None:
    for key, tensor in ours.items():
        if key not in theirs:
            return f"{key} is missing from the checkpoint"
        saved = theirs[key]
        if not isinstance(tensor, torch.Tensor):  # a module's extra state: its own load_state_dict judges it
            continue
        if not isinstance(saved, torch.Tensor) or tuple(saved.shape) != tuple(tensor.shape):
            shape = list(saved.shape) if isinstance(saved, torch.Tensor) else type(saved).__name__
            return f"{key} has shape {shape} in the checkpoint but {list(tensor.shape)} here"
    extra = next((key for key in theirs if key not in ours), None)
    return None if extra is None else f"{extra} is in the checkpoint but not in this network"


def _first_difference(saved: Any, ours: Any, where: str = "", depth: int = 0) -> str | None:
    """The first dotted key whose value differs between two blueprint documents, with both values."""
    if depth < 64 and isinstance(saved, dict) and isinstance(ours, dict):
        for key in [*saved, *(k for k in ours if k not in saved)]:
            found = _first_difference(saved.get(key), ours.get(key), join_path(where, str(key)), depth + 1)
            if found:
                return found
        return None
    if depth < 64 and isinstance(saved, list) and isinstance(ours, list) and len(saved) == len(ours):
        for index, (a, b) in enumerate(zip(saved, ours)):
            found = _first_difference(a, b, join_path(where, index), depth + 1)
            if found:
                return found
        return None
    if saved == ours:
        return None
    return f"{where or 'the top'} ({_short(saved)} in the checkpoint, {_short(ours)} now)"


def _short(value: Any) -> str:
    text = "absent" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def refuse_incomplete(folder: Path, skipped: list[str], *, report: Callable[[str], None]) -> None:
    """Refuse, in one line naming what is there, to start over beside checkpoints that do not load.

    Unreadable ``step-*.pt`` files mean this folder held a run that reached a checkpoint: starting
    from step 0 would rotate them away, so nothing is removed and the user decides. Unfinished
    ``*.pt.tmp`` writes alone (a process killed while writing its first checkpoint) hold nothing that
    can be loaded: that is a warning and a start from step 0, so a restart policy running the same
    ``--resume`` command (torchrun --max-restarts, a scheduler's requeue) is not stopped by it.
    """
    unfinished = list_unfinished(folder)
    if not skipped and not unfinished:
        return
    found = [message.removeprefix("skipping unreadable checkpoint ").removeprefix(f"{folder}/")
             for message in skipped if message.startswith("skipping")]
    found += [f"{path.name}: an unfinished write of {_size(path)}" for path in unfinished]
    shown = "; ".join(found[:4]) + (f"; and {len(found) - 4} more" if len(found) > 4 else "")
    if not skipped:
        report(f"warning: --resume: {folder} holds only unfinished writes ({shown}), nothing that loads: "
               "starting from step 0")
        return
    raise GanforgeError(f"--resume: no complete checkpoint in {folder}: none of the checkpoints can be read "
                        f"({shown}); nothing was removed: move them away to start this run over")


def _size(path: Path) -> str:
    try:
        return f"{path.stat().st_size:,} bytes"
    except OSError:
        return "size unknown"


def _found(folder: Path, found: tuple[Path, CheckpointRecord] | None) -> str:
    """What ``read_newest_valid`` found, in words that are equal exactly when two processes found the same file."""
    if found is not None:
        try:
            digest = recorded_checksum(found[0])
        except OSError:  # gone since it loaded: still a name to compare
            digest = None
        return f"{found[0].name} (sha256 {digest[:12] if digest else 'none'})"
    return "no readable checkpoint" if list_checkpoints(folder) else "no checkpoint"
