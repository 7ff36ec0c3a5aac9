"""Files that appear whole or not at all: a temporary file, its size checked, fsynced, then renamed.

A full disk does not always say so plainly. ``torch.save`` re-raises the writer's ``OSError``
and, while closing the archive, a ``RuntimeError`` ("unexpected pos") that hides it; safetensors
reports ``SafetensorError: ... I/O error: No space left on device (os error 28)``; a buffered
write can even fail without an error and leave a short file. ``replacing`` turns each into one
``GanforgeError`` line naming the file, removes the partial file, and never renames a file whose
size is not the one written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path
from typing import Callable, Iterator

from ..errors import GanforgeError

_RUST_IO = re.compile(r"I/O error: (.+?) \(os error (\d+)\)")
_TORCH_WRITER = ("unexpected pos", "inline_container", "iostream error")  # torch.save's C++ writer failing


def os_error_in(err: BaseException) -> OSError | None:
    """``err`` itself when it is an OSError, else the first one in its ``__cause__``/``__context__`` chain."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def failure_reason(err: BaseException) -> str | None:
    """Why a write failed, in a few words (``No space left on device``), or None when ``err`` is not a write failure."""
    found = os_error_in(err)
    if found is not None:
        return found.strerror or str(found)
    text = " ".join(str(err).split())
    rust = _RUST_IO.search(text)
    if rust is not None:
        return rust.group(1)
    if isinstance(err, RuntimeError) and any(marker in text for marker in _TORCH_WRITER):
        return f"the write failed ({text[:160]})"
    return None


def check_size(path: Path, expected: int) -> None:
    """Raise an OSError (EIO) unless ``path`` holds exactly ``expected`` bytes: a short write is a failed one."""
    actual = path.stat().st_size
    if actual != expected:
        raise OSError(errno.EIO, f"only {actual:,} of {expected:,} bytes reached the disk")


def sync_file(path: Path) -> None:
    """fsync ``path``'s data (a full disk or a failing device may only say so here)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(folder: Path) -> None:
    """fsync a folder so a rename in it survives a crash; best effort (not every filesystem allows it)."""
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


@contextlib.contextmanager
def replacing(final: Path, *, what: str, note: Callable[[], str] | None = None) -> Iterator[Path]:
    """Yield the temporary path to write; then fsync it and rename it to ``final``.

    On any failure the temporary file is removed. A failed write (``failure_reason``) becomes one
    GanforgeError: ``cannot write <what> <final>: <reason>[; the partial file was removed][; <note()>]``;
    anything else (a bug, Ctrl-C) is re-raised as it was. ``final`` is never touched unless the new
    file is complete.
    """
    temporary = final.with_name(final.name + ".tmp")
    try:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError as err:  # a file where a folder belongs: say that, not "File exists"
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", err.filename) from None
        yield temporary
        sync_file(temporary)
        os.replace(temporary, final)
    except BaseException as err:
        partial = False
        with contextlib.suppress(OSError):
            partial = temporary.exists()
            temporary.unlink(missing_ok=True)
        reason = failure_reason(err)
        if reason is None:
            raise
        where = getattr(os_error_in(err), "filename", None)
        message = f"cannot write {what} {final}: {reason}"
        if where and str(where) not in (str(final), str(temporary)):
            message += f" ({where})"
        if partial:
            message += "; the partial file was removed"
        text = note() if note is not None else ""
        raise GanforgeError(message + (f"; {text}" if text else "")) from err
    sync_folder(final.parent)
