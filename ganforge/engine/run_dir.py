"""The run folder: its layout (one place names it), proving it takes files, tidying up after a failed start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import GanforgeError


@dataclass(frozen=True)
class RunDir:
    """Where a run keeps what it writes; every reader and writer asks here for a path."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def sample_grid(self, step: int) -> Path:
        return self.samples / f"step-{step:09d}.png"

    @classmethod
    def of_checkpoint(cls, checkpoint: Path) -> "RunDir":
        """The run a checkpoint file belongs to (its folder, or the folder above ``checkpoints/``)."""
        parent = checkpoint.parent
        return cls(parent.parent if parent.name == "checkpoints" else parent)


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
