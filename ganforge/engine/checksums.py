"""The SHA-256 trailer that ends every checkpoint: written with the file, checked on load.

``b"\\0ganforge-sha256:" + <64 hex> + b"\\n"``, the hash of every byte before it (what ``torch.save``
wrote); see ``checkpoints`` for why it sits inside the same atomic write.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..hashing import HashingWriter  # noqa: F401  (checkpoints write through it)

TRAILER_MAGIC = b"\0ganforge-sha256:"
TRAILER_SIZE = len(TRAILER_MAGIC) + 64 + 1
_CHUNK = 1 << 20


class ChecksumMismatch(ValueError):
    """The bytes of a checkpoint are not the ones that were written."""


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
