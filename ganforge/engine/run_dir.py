"""The run folder: proving it takes files before anything is built, and tidying up after a failed start."""

from __future__ import annotations

from pathlib import Path

from ..errors import GanforgeError


def check_writable(run_dir: Path) -> list[Path]:
    """Create ``run_dir`` and prove it takes a file; returns the folders this call created, deepest first."""
    import tempfile

    created = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass  # a unique name: every torchrun process may probe at once
    except OSError as err:
        remove_if_empty(created)
        raise GanforgeError(f"cannot write to --out {run_dir}: {err.strerror or err}") from None
    return created


def remove_if_empty(folders: list[Path]) -> None:
    """Remove each folder (deepest first) that is empty; anything with content, or that fails, stays."""
    for folder in folders:
        try:
            folder.rmdir()  # fails unless empty
        except OSError:
            return  # its parents are not empty either
