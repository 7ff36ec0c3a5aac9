"""Checkpoints that survive SIGKILL: written to a temporary file, fsynced, then renamed.

Loaded with ``torch.load(weights_only=True)``, so a checkpoint from a stranger cannot run code.

Integrity: every checkpoint ends with a fixed-size trailer, ``b"\\0ganforge-sha256:" + <64 hex> + b"\\n"``,
the SHA-256 of all the bytes before it (the file ``torch.save`` wrote). The trailer goes into the same
temporary file before the fsync and rename, so a checkpoint and its checksum appear together or not at
all; ``torch.load`` ignores bytes after the zip archive, so the file still loads with plain
``torch.load``. Loading recomputes the hash and treats a mismatch like an unreadable file.
Checkpoints written before checksums (``format`` 1, no trailer) still load, with a one-line warning;
a ``format`` 2 checkpoint without its trailer is refused.

Format: one typed record, ``CheckpointRecord``, written (``write_checkpoint``, ``write_best``) and read
(``read_checkpoint``, ``read_newest_valid``) here and nowhere else. On disk it is a plain dict of
tensors, lists and numbers (``CheckpointRecord.to_dict``), so ``torch.load(weights_only=True)`` reads
it. Every file carries its ``format``; an older one is brought up to ``FORMAT`` on load by the
chain ``MIGRATIONS`` (one small function per version: ``MIGRATIONS[n]`` turns format n into n + 1),
and a newer or unknown one is refused with a GanforgeError. To change the layout: bump ``FORMAT``,
add ``MIGRATIONS[FORMAT - 1]``, and keep a fixture of the old format under ``tests/fixtures/``.
The dict-returning ``load_checkpoint``/``load_newest_valid``/``save_checkpoint`` remain for callers
that want the raw (migrated) mapping.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import GanforgeError
from .checksums import (TRAILER_MAGIC, TRAILER_SIZE, ChecksumMismatch, HashingWriter, content_checksum,  # noqa: F401
                        recorded_checksum, trailer, verify_checksum)
from .durable import check_size, replacing

PATTERN = re.compile(r"^step-(\d{9})\.pt$")
FORMAT = 2  # 2: sha256 trailer; 1: none (still loaded, with a warning, migrated by MIGRATIONS[1])
CHECKSUM_SINCE = 2  # from this format on, a missing trailer means the file was damaged
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
    """Temporary file, size check, fsync, rename, fsync the folder: a crash leaves the old file or the new one.

    A failed write (disk full, quota, permissions; also as ``torch.save``'s RuntimeError wrapping of
    it) is one GanforgeError naming ``final``; the partial file is removed and earlier checkpoints
    stay as they were (``durable.replacing``).
    """
    with replacing(final, what="checkpoint", note=lambda: _kept_note(final)) as temporary:
        with open(temporary, "wb") as handle:
            hashing = HashingWriter(handle)
            torch.save({**state, "format": FORMAT, "step": step, "complete": True}, hashing)
            handle.write(trailer(hashing.digest.hexdigest()))
            handle.flush()
            os.fsync(handle.fileno())
        check_size(temporary, hashing.size + TRAILER_SIZE)
    return final


def _kept_note(final: Path) -> str:
    """What a failed checkpoint write leaves to resume from."""
    kept = [path for path in list_checkpoints(final.parent) if path != final]
    if not kept:
        return "no earlier checkpoint exists (free space, then train again)"
    return f"earlier checkpoints are intact (newest {kept[-1].name}; free space, then --resume)"


def list_checkpoints(folder: Path) -> list[Path]:
    """Finished checkpoint files, oldest first (temporary files are ignored)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if PATTERN.match(p.name)]
    return sorted(found, key=step_of)


def list_unfinished(folder: Path) -> list[Path]:
    """Temporary files of checkpoint writes that never finished (the process was killed mid-write), by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(".tmp") and
                  (PATTERN.match(p.name[:-len(".tmp")]) or p.name == "best.pt.tmp"))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu", *,
                    warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """A complete ganforge checkpoint whose bytes match their recorded SHA-256, as a current-format dict.

    Raises ``ChecksumMismatch`` (a ValueError) when they do not, like any unreadable file. A
    pre-checksum (format 1) checkpoint is loaded unverified and ``warn`` is told so; an older format
    is migrated to ``FORMAT``, a newer or unknown one raises GanforgeError.
    """
    verified = verify_checksum(path)
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or not state.get("complete"):
        raise ValueError("not a complete ganforge checkpoint")
    version = _format_of(state, path)
    if not verified:
        if version >= CHECKSUM_SINCE:
            raise ChecksumMismatch("its sha256 trailer is missing or damaged")
        if warn is not None:
            warn(f"warning: {path} has no checksum (written by an older ganforge): loaded unverified")
    return migrate(state, path=path)


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu", *,
                    warn: Callable[[str], None] | None = None) -> CheckpointRecord:
    """``load_checkpoint`` as a typed record: the one way ganforge reads a checkpoint file."""
    return CheckpointRecord.from_dict(load_checkpoint(path, map_location, warn=warn))


def load_newest_valid(folder: Path, *, map_location: str | torch.device = "cpu",
                      report: Callable[[str], None] = print) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; corrupt, truncated or altered ones are reported and skipped."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path, map_location, warn=report)
        except Exception as err:  # truncated zip, bad pickle, checksum mismatch, wrong content: all mean "skip"
            report(f"skipping unreadable checkpoint {path}: {unreadable_reason(path, err)}")
    return None


def unreadable_reason(path: Path, err: BaseException) -> str:
    """Why ``path`` did not load, on one short line (torch's messages run to several sentences)."""
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    if size == 0:
        return "the file is empty (0 bytes)"
    text = " ".join(str(err).split())
    first = text.split(". ", 1)[0][:200]
    if first:
        return f"{type(err).__name__}: {first}"
    return type(err).__name__ if size is None else f"{type(err).__name__} ({size:,} bytes)"


def read_newest_valid(folder: Path, *, map_location: str | torch.device = "cpu",
                      report: Callable[[str], None] = print) -> tuple[Path, CheckpointRecord] | None:
    """``load_newest_valid`` as a typed record."""
    found = load_newest_valid(folder, map_location=map_location, report=report)
    return None if found is None else (found[0], CheckpointRecord.from_dict(found[1]))


# -- migrations -------------------------------------------------------------------------------
def _format_of(state: dict[str, Any], path: Path | str | None = None) -> int:
    version = state.get("format")
    where = f"{path}: " if path is not None else ""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise GanforgeError(f"{where}unknown checkpoint format {version!r} (this ganforge reads formats 1 to "
                            f"{FORMAT})")
    if version > FORMAT:
        raise GanforgeError(f"{where}checkpoint format {version} is newer than this ganforge reads (formats 1 "
                            f"to {FORMAT}): upgrade ganforge to load it")
    return version


def _to_list(value: Any) -> Any:
    return value.tolist() if isinstance(value, torch.Tensor) else value


def _format_1_to_2(state: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (before the SHA-256 trailer) to 2.

    The earliest format-1 files held one process's random state as a dict with tensors (``cuda``:
    every device's state); later ones a list per rank of plain lists. Keys added during format 1
    (``images_seen``, ``best_fid``, ``blueprint_file``) get their neutral values.
    """
    rng = state.get("rng")
    if isinstance(rng, dict):
        numpy_state = list(rng.get("numpy") or [])
        if len(numpy_state) > 1:
            numpy_state[1] = _to_list(numpy_state[1])
        cuda = rng.get("cuda")
        if isinstance(cuda, (list, tuple)):  # torch.cuda.get_rng_state_all(): one per device
            cuda = _to_list(cuda[0]) if len(cuda) == 1 else None
        rng = [{**rng, "numpy": numpy_state, "torch": _to_list(rng.get("torch")), "cuda": _to_list(cuda),
                "noise": _to_list(rng.get("noise"))}]
    state["rng"] = rng if rng is not None else []
    state.setdefault("ema", None)
    state.setdefault("images_seen", 0)
    state.setdefault("best_fid", None)
    state.setdefault("blueprint_file", None)
    return state


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _format_1_to_2}
"""``MIGRATIONS[n]`` turns a format-n checkpoint dict into format n + 1 (it may change its argument)."""
READABLE_FORMATS = tuple(range(1, FORMAT + 1))


def migrate(state: dict[str, Any], *, path: Path | str | None = None) -> dict[str, Any]:
    """``state`` brought up to ``FORMAT`` one version at a time; newer or unknown formats are refused."""
    version = _format_of(state, path)
    state = dict(state)
    while version < FORMAT:
        step = MIGRATIONS.get(version)
        if step is None:
            raise GanforgeError(f"{path or 'checkpoint'}: no migration from checkpoint format {version}")
        state = step(state)
        version += 1
        state["format"] = version
    return state


# -- the record ---------------------------------------------------------------------------------
@dataclass
class CheckpointRecord:
    """Everything a checkpoint holds, in the current ``FORMAT``.

    ``rng`` holds one entry per training process (rank order), each a dict of plain lists;
    ``data`` is the data stream's position; ``blueprint`` the resolved blueprint document (the
    networks are rebuilt from it alone); ``fid`` is set in ``best.pt`` only. Keys this version does
    not know (from a plugin or a newer minor writer) are kept in ``extra`` and written back.
    """

    step: int
    generator: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor]
    blueprint: dict[str, Any]
    ema: dict[str, torch.Tensor] | None = None
    g_optimizer: dict[str, Any] | None = None
    d_optimizer: dict[str, Any] | None = None
    rng: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] | None = None
    images_seen: int = 0
    best_fid: float | None = None
    blueprint_file: str | None = None
    fid: float | None = None
    # stateful components' state_dict() by blueprint key (ADA's p), one mapping per process like ``rng``
    components: list[dict[str, Any]] | None = None
    format: int = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    _ON_DISK_ONLY = ("complete",)

    def to_dict(self) -> dict[str, Any]:
        """The on-disk dict (``format``/``complete`` are set by the writer); ``fid`` only when set."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("extra", "format", "fid", "components")}
        for optional in ("fid", "components"):  # written only when set
            if getattr(self, optional) is not None:
                out[optional] = getattr(self, optional)
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> CheckpointRecord:
        """A record from a current-format dict (run ``migrate`` first for older ones)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in state.items() if k in known}
        extra = {k: v for k, v in state.items() if k not in known and k not in cls._ON_DISK_ONLY}
        for required in ("step", "generator", "discriminator", "blueprint"):
            if required not in values:
                raise ValueError(f"not a complete ganforge checkpoint (no {required!r})")
        values["step"] = int(values["step"])
        values["images_seen"] = int(values.get("images_seen") or 0)
        return cls(**values, extra=extra)


def write_checkpoint(folder: Path, record: CheckpointRecord, *, keep: int) -> Path:
    """Write ``record`` as ``step-N.pt`` (atomic, checksummed), then drop all but the newest ``keep``."""
    return save_checkpoint(folder, record.step, record.to_dict(), keep=keep)


def write_best(folder: Path, record: CheckpointRecord) -> Path:
    """Write ``record`` as ``best.pt`` (atomic, checksummed); rotation never touches it."""
    return save_best(folder, record.to_dict(), step=record.step)

