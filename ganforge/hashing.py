"""A write-through file wrapper that counts and hashes what passes: how checkpoints get their
trailer checksum and prepared shards their manifest record, in the one pass that writes them."""

from __future__ import annotations

import hashlib
from typing import Any, BinaryIO


class HashingWriter:
    """Hands every write on to ``handle``, counting its bytes (compared with the file's size before
    the rename) and hashing them (SHA-256)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.size, self.digest = handle, 0, hashlib.sha256()

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.handle.write(view)  # a short write raises (buffered files write all or fail)
        self.digest.update(view)
        self.size += len(view)
        return len(view)

    def flush(self) -> None:
        self.handle.flush()

    def record(self) -> dict[str, Any]:
        """What a prepared manifest stores for the file: its length and hex SHA-256."""
        return {"bytes": self.size, "sha256": self.digest.hexdigest()}
