"""Checkpoints that survive SIGKILL: written to a temporary file, fsynced, then renamed.

Loaded with ``torch.load(weights_only=True)``, so a checkpoint from a stranger cannot run code.

Integrity: every checkpoint ends with a fixed-size trailer, ``b"\\0ganforge-sha256:" + <64 hex> + b"\\n"``,
the SHA-256 of all the bytes before it (the file ``torch.save`` wrote). The trailer goes into the same
temporary file before the fsync and rename, so a checkpoint and its checksum appear together or not at
all; ``torch.load`` ignores bytes after the zip archive, so the file still loads with plain
``torch.load``. Loading recomputes the hash and treats a mismatch like an unreadable file.
Checkpoints written before checksums (``format`` 1, no trailer) still load, with a one-line warning;
a ``format`` 2 checkpoint without its trailer is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import GanforgeError

PATTERN = re.compile(r"^step-(\d{9})\.pt$")
FORMAT = 2  # 2: sha256 trailer; 1: none (still loaded, with a warning)
READABLE_FORMATS = (1, 2)
TRAILER_MAGIC = b"\0ganforge-sha256:"
TRAILER_SIZE = len(TRAILER_MAGIC) + 64 + 1
_CHUNK = 1 << 20


class ChecksumMismatch(ValueError):
    """The bytes of a checkpoint are not the ones that were written."""


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
            hashing = _HashingWriter(handle)
            torch.save({**state, "format": FORMAT, "step": step, "complete": True}, hashing)
            handle.write(trailer(hashing.digest.hexdigest()))
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


def trailer(hexdigest: str) -> bytes:
    return TRAILER_MAGIC + hexdigest.encode("ascii") + b"\n"


def recorded_checksum(path: Path) -> str | None:
    """The SHA-256 hex digest in ``path``'s trailer, or None when it has none."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size < TRAILER_SIZE:
            return None
        handle.seek(size - TRAILER_SIZE)
        tail = handle.read(TRAILER_SIZE)
    if not tail.startswith(TRAILER_MAGIC) or not tail.endswith(b"\n"):
        return None
    digest = tail[len(TRAILER_MAGIC):-1].decode("ascii", errors="replace")
    return digest if re.fullmatch(r"[0-9a-f]{64}", digest) else None


def content_checksum(path: Path) -> str:
    """SHA-256 of ``path``'s content without its trailer (the bytes ``torch.save`` wrote)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        remaining = handle.seek(0, os.SEEK_END) - TRAILER_SIZE
        handle.seek(0)
        while remaining > 0:
            chunk = handle.read(min(_CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path) -> bool:
    """True when the trailer matches the content, False when there is no trailer; raises on a mismatch."""
    recorded = recorded_checksum(path)
    if recorded is None:
        return False
    actual = content_checksum(path)
    if actual != recorded:
        raise ChecksumMismatch(f"checksum mismatch (sha256 {actual[:12]}..., recorded {recorded[:12]}...): "
                               "the file changed after it was written")
    return True


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu", *,
                    warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """A complete ganforge checkpoint whose bytes match their recorded SHA-256.

    Raises ``ChecksumMismatch`` (a ValueError) when they do not, like any unreadable file. A
    pre-checksum (format 1) checkpoint is loaded unverified and ``warn`` is told so.
    """
    verified = verify_checksum(path)
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or not state.get("complete") or state.get("format") not in READABLE_FORMATS:
        raise ValueError("not a complete ganforge checkpoint")
    if not verified:
        if state.get("format") != 1:
            raise ChecksumMismatch("its sha256 trailer is missing or damaged")
        if warn is not None:
            warn(f"warning: {path} has no checksum (written by an older ganforge): loaded unverified")
    return state


def load_newest_valid(folder: Path, *, map_location: str | torch.device = "cpu",
                      report: Callable[[str], None] = print) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; corrupt, truncated or altered ones are reported and skipped."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path, map_location, warn=report)
        except Exception as err:  # truncated zip, bad pickle, checksum mismatch, wrong content: all mean "skip"
            report(f"skipping unreadable checkpoint {path}: {type(err).__name__}: {err}")
    return None


class _HashingWriter:
    """A write-only file object that hashes what passes through it to ``handle``."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def write(self, data: Any) -> int:
        self.digest.update(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


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
