"""HashingWriter against hashlib over the bytes that reached the file."""

from __future__ import annotations

import hashlib

import numpy as np

from ganforge.hashing import HashingWriter


def test_counts_and_hashes_exactly_what_reaches_the_file(tmp_path):
    path = tmp_path / "a.npy"
    with open(path, "wb") as handle:
        writer = HashingWriter(handle)
        np.save(writer, np.arange(1000, dtype=np.int64).reshape(10, 100))  # np.save writes memoryviews too
        writer.write(b"tail")
    data = path.read_bytes()
    assert writer.record() == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert writer.digest.hexdigest() == hashlib.sha256(data).hexdigest() and writer.size == len(data)
