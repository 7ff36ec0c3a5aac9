"""The run folder's lock: one process trains in a folder at a time.

Two trainers in one folder interleave their ``metrics.jsonl`` lines, overwrite each other's
checkpoints and race on temporary names; the second is refused before it writes anything.
The lock is ``filelock``'s ``FileLock`` (``flock``): the kernel drops it when the holder dies,
so a killed run never leaves a lock behind that would block its ``--resume``. Who holds it is
written beside it, for the refusal to name.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import GanforgeError

LOCK_NAME = ".ganforge.lock"
HOLDER_NAME = ".ganforge.lock.json"
_HOLDER_WAIT_S = 1.0  # a holder that has just taken the lock writes who it is within moments


class RunLock:
    """The lock on one run folder; ``acquire`` never waits, ``release`` is safe to call when not held."""

    def __init__(self, *, root: Path) -> None:
        self.root = root
        self.path = root / LOCK_NAME
        self.holder_path = root / HOLDER_NAME
        self._lock: Any = None

    @property
    def held(self) -> bool:
        return self._lock is not None

    def acquire(self, *, report: Callable[[str], None] = print) -> None:
        """Take the lock (creating the folder), or raise the one line naming who holds it.

        Where the filesystem has no ``flock`` the run goes on unlocked with a warning: a lock that a
        killed process left behind would block its own ``--resume``.
        """
        from filelock import FileLock, Timeout

        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise GanforgeError(f"cannot write run folder {self.root}: {err.strerror or err}") from None
        try:  # a soft lock (a marker file) would outlive a killed holder
            lock = FileLock(self.path, thread_local=False, fallback_to_soft=False)
        except TypeError:  # filelock before 3.30: no soft fallback to turn off
            lock = FileLock(self.path, thread_local=False)
        try:
            lock.acquire(timeout=0)  # one try, no waiting
            if not self.path.exists():  # locked a file the previous holder had just unlinked (``release``)
                lock.release()
                raise Timeout(str(self.path))
        except Timeout:
            raise GanforgeError(self._refusal()) from None
        except (OSError, NotImplementedError) as err:
            report(f"warning: cannot lock {self.path} ({getattr(err, 'strerror', None) or err}): training "
                   "without the lock; make sure no other process trains in this folder")
            return
        self._lock = lock
        try:
            self._write_holder()
        except OSError as err:
            self.release()
            raise GanforgeError(f"cannot write {self.holder_path}: {err.strerror or err}") from None

    def release(self) -> None:
        """Drop the lock, leaving nothing in the folder.

        The holder file goes first, so a reader never names a finished process; the lock file is
        unlinked while still held (a process that locks it after that finds it gone: ``acquire``), so
        a run folder keeps no lock files once training has ended.
        """
        if self._lock is None:
            return
        for path in (self.holder_path, self.path):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass  # the kernel lock below is what counts
        lock, self._lock = self._lock, None
        lock.release()

    def _write_holder(self) -> None:
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "command": sys.argv}
        temporary = self.holder_path.with_name(self.holder_path.name + ".tmp")
        temporary.write_text(json.dumps(holder), encoding="utf-8")
        os.replace(temporary, self.holder_path)  # whole or absent for a reader

    def _refusal(self) -> str:
        holder = self._read_holder()
        if holder is None:
            who = f"holder unknown: {self.holder_path} unreadable"
        else:
            who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
        return (f"{self.root}: another ganforge process is training in this folder ({who}; lock {self.path}): "
                "wait for it or use another --out")

    def _read_holder(self) -> dict[str, Any] | None:
        deadline = time.monotonic() + _HOLDER_WAIT_S
        while True:
            try:
                value = json.loads(self.holder_path.read_text(encoding="utf-8"))
                return value if isinstance(value, dict) else None
            except (OSError, ValueError):
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.05)
