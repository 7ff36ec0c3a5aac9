"""Only regular files are opened as data: a FIFO or device would block a read forever (or act on open).

Every data file (image, ``.npz``, shard, manifest) is judged by ``os.stat`` first, without opening it,
then opened non-blocking and checked again with ``fstat``, so a file swapped for a FIFO in between
cannot hang the read either.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from ...json_depth import json_depth

MAX_JSON_BYTES = 64 * 2**20
"""A manifest, plan or shard record: ImageNet's manifest, skipped files listed, is well under 1 MiB."""
MAX_JSON_NESTING = 32
"""Nested lists/objects in such a file (ganforge writes 3 levels); deeper is refused before parsing."""


class NotRegularFile(OSError):
    """A data path that is a FIFO, device, socket or directory: never opened for reading."""

    reason = "not a regular file"


def _not_regular(path: str | os.PathLike[str], mode: int) -> NotRegularFile:
    reason = f"is a {file_kind(mode)}, not a regular file"
    error = NotRegularFile(f"{os.fspath(path)}: {reason}")
    error.reason = reason
    return error


def os_reason(err: OSError) -> str:
    """Why an ``OSError`` happened, without the path (which the caller names once)."""
    return getattr(err, "reason", None) or err.strerror or " ".join(str(err).split())


def file_kind(mode: int) -> str:
    """What a non-regular ``st_mode`` is, in words."""
    kinds = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")


def check_regular(path: str | os.PathLike[str]) -> os.stat_result:
    """``os.stat`` of ``path`` (links followed); raises ``NotRegularFile`` unless it is a regular file.

    A missing file or dangling link raises ``FileNotFoundError`` naming the path.
    """
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(path, info.st_mode)
    return info


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for binary reading, only if it is a regular file (checked before and after opening)."""
    check_regular(path)
    handle = open(path, "rb", opener=lambda name, flags: os.open(name, flags | getattr(os, "O_NONBLOCK", 0)))
    mode = os.fstat(handle.fileno()).st_mode
    if not stat.S_ISREG(mode):
        handle.close()
        raise _not_regular(path, mode)
    return handle


def read_json(path: Path, *, limit: int = MAX_JSON_BYTES, nesting: int = MAX_JSON_NESTING) -> Any:
    """A small JSON file, bounded in size and nesting; raises ``ValueError`` or ``OSError`` saying why."""
    with open_regular(path) as handle:
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise ValueError(f"over {limit} bytes")
    depth = json_depth(raw)
    if depth > nesting:
        raise ValueError(f"nested {depth} levels deep, more than {nesting}")
    return json.loads(raw.decode("utf-8"))  # ganforge writes UTF-8; json's own guess reads junk as UTF-16


