"""One array file of a prepared folder: written with its size and SHA-256, mapped back only if they match.

``ganforge prepare`` records both for every ``.npy`` it writes (``HashingWriter``). Reading
(``map_array``) checks that the path is a regular file, that its ``.npy`` header has the expected
dtype and shape and that its length is exactly header + data (a truncated copy is refused), and the
recorded size, every time; the hash only when asked, because it reads the whole file (about 1 s
per GB and core). A ``Signature`` (device, inode, size, mtime) of the file that was hashed lets a
process skip hashing a file it, or the process that pickled the dataset, already verified.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from ...errors import GanforgeError
from ...hashing import HashingWriter  # noqa: F401  (prepare writes through it)
from .files import open_regular, os_reason

MAX_HEADER_BYTES = 10_000
"""numpy's own default bound on an ``.npy`` header (``max_header_size``)."""


class Signature(NamedTuple):
    """What identifies a file's content cheaply: if none of these changed, a verified file is unchanged."""

    device: int
    inode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Expected:
    """What one array file must be; ``size`` and ``sha256`` are None in manifests written before checksums."""

    path: Path
    dtype: str
    shape: tuple[int, ...]
    size: int | None = None
    sha256: str | None = None


class ShardError(GanforgeError):
    """A shard file that is not what its manifest recorded."""


def map_array(expected: Expected, *, verify: bool, verified: Signature | None = None) -> tuple[Any, Signature]:
    """The file's array, read-only and memory-mapped, and its signature.

    With ``verify`` and a recorded hash, the file is hashed unless its signature equals ``verified``.
    Raises ``ShardError`` naming the file when anything differs from ``expected``.
    """
    import numpy as np

    path = expected.path
    try:
        with open_regular(path) as handle:
            info = os.fstat(handle.fileno())
            signature = Signature(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
            if expected.size is not None and info.st_size != expected.size:
                raise ShardError(f"{path}: {info.st_size} bytes but the manifest records {expected.size}: the shard "
                                 "was truncated or replaced since `ganforge prepare` wrote it; rerun `ganforge prepare`")
            if verify and expected.sha256 is not None and signature != verified:
                digest = sha256_of(handle)
                if digest != expected.sha256:
                    raise ShardError(f"{path}: SHA-256 {digest[:16]}... differs from the manifest's "
                                     f"{expected.sha256[:16]}...: the shard's bytes changed since `ganforge prepare` "
                                     "wrote it (a damaged disk or copy); rerun `ganforge prepare`")
                handle.seek(0)
            dtype, shape, offset = _header(handle, path)
            if dtype != np.dtype(expected.dtype) or shape != expected.shape:
                raise ShardError(f"{path}: holds {'×'.join(map(str, shape)) or 'a scalar'} {dtype} but the manifest "
                                 f"calls for {'×'.join(map(str, expected.shape))} {expected.dtype}; rerun "
                                 "`ganforge prepare`")
            length = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if info.st_size != length:
                raise ShardError(f"{path}: {info.st_size} bytes, but its header says {length}: the file is "
                                 "truncated or damaged; rerun `ganforge prepare`")
            if 0 in shape:
                return np.empty(shape, dtype=dtype), signature
            array = np.memmap(handle, dtype=dtype, mode="r", shape=shape, offset=offset)
    except OSError as err:
        raise ShardError(f"{path}: cannot be read ({os_reason(err)}); rerun `ganforge prepare`") from None
    return array.view(np.ndarray), signature


def _header(handle: BinaryIO, path: Path) -> tuple[Any, tuple[int, ...], int]:
    """(dtype, shape, data offset) of an ``.npy`` file, C order only."""
    import numpy as np

    fmt = np.lib.format
    try:
        version = fmt.read_magic(handle)
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran_order, dtype = reader(handle, max_header_size=MAX_HEADER_BYTES)
    except (ValueError, EOFError) as err:
        raise ShardError(f"{path}: not a readable .npy file ({err}); rerun `ganforge prepare`") from None
    if fortran_order or dtype.hasobject:
        raise ShardError(f"{path}: not an array `ganforge prepare` writes (Fortran order or objects)")
    return dtype, tuple(shape), handle.tell()


def sha256_of(handle: BinaryIO) -> str:
    """The hex SHA-256 of a file from its current position to the end."""
    return hashlib.file_digest(handle, "sha256").hexdigest()
