"""Networks back from a run folder or checkpoint file alone: no training data, no blueprint file."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..assembly import Assembly, Network, assemble
from ..blueprint.validation import LoadedBlueprint, validate_document
from ..errors import GanforgeError
from ..components.layers.spectral_norm import refresh_spectral_norm
from ..registry import Registry, default_registry
from .checkpoints import CheckpointRecord, read_checkpoint, read_newest_valid


@dataclass
class RestoredRun:
    """A checkpoint's networks, rebuilt from the resolved blueprint it carries."""

    checkpoint: Path
    run_dir: Path
    step: int
    loaded: LoadedBlueprint
    assembly: Assembly
    generator: Network
    uses_ema: bool
    record: CheckpointRecord
    registry: Registry | None = None  # what resolved its components (None: the global one)

    @property
    def state(self) -> dict:
        """The checkpoint as its on-disk dict (current format); prefer ``record``."""
        return self.record.to_dict()

    def discriminator(self, device: torch.device | str = "cpu") -> Network:
        network = self.assembly.discriminator.build(device, initialise=False)
        network.load_state_dict(self.record.discriminator)
        return network.eval()


def warn_on_stderr(message: str) -> None:
    print(message if message.startswith("warning:") else f"warning: {message}", file=sys.stderr)


def find_checkpoint(target: str | Path, *, warn: Callable[[str], None] = warn_on_stderr) -> tuple[Path, dict]:
    """``find_record`` with the checkpoint as its on-disk dict (current format)."""
    path, record = find_record(target, warn=warn)
    return path, record.to_dict()


def find_record(target: str | Path, *,
                warn: Callable[[str], None] = warn_on_stderr) -> tuple[Path, CheckpointRecord]:
    """``target`` is a checkpoint file, a run folder, or a run's ``checkpoints`` folder.

    In a folder, the newest checkpoint that loads and matches its checksum; every newer one that
    was skipped is named on ``warn`` (one line each) with the reason, so no command silently uses
    an older checkpoint. When none loads, the reasons go into the one-line error instead.
    """
    path = Path(target)
    if path.is_file():
        try:
            return path, read_checkpoint(path, warn=warn)
        except Exception as err:
            raise GanforgeError(f"{path}: not a readable ganforge checkpoint ({type(err).__name__}: {err})") from None
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        messages: list[str] = []
        found = read_newest_valid(folder, report=messages.append)
        if found is None:
            reasons = f" ({'; '.join(messages)})" if messages else ""
            raise GanforgeError(f"{path}: no readable checkpoint (looked in {folder}){reasons}")
        for message in messages:
            if message.startswith("skipping"):
                message = f"{message}; using {found[0].name}"
            warn(message)
        return found
    raise GanforgeError(f"{path}: no such run folder or checkpoint file")


def restore(target: str | Path, *, device: torch.device | str = "cpu", prefer_ema: bool = True,
            warn: Callable[[str], None] = warn_on_stderr, registry: Registry | None = None) -> RestoredRun:
    """Rebuild G (the EMA copy when there is one and ``prefer_ema``) in eval mode on ``device``.

    The EMA copy's spectral-norm u/v are set to its own weights' singular vectors (converged power
    iteration): the stored ones may be stale or, in older checkpoints, the live generator's.
    A ``.safetensors`` file is an export (``ganforge.commands.export``): its one generator, as written.
    ``registry`` (default: the global one) resolves the stored blueprint's components; it is kept on
    the result, so evaluating the run uses it too.
    """
    if Path(target).suffix == ".safetensors":
        from ..commands.export import restore_export

        return restore_export(target, device=device, prefer_ema=prefer_ema, warn=warn)
    checkpoint, record = find_record(target, warn=warn)
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    loaded = validate_document(record.blueprint, file=f"{checkpoint} (stored blueprint)")
    registry = default_registry() if registry is None else registry
    assembly = assemble(loaded, registry)
    generator = assembly.generator.build(device, initialise=False)
    uses_ema = prefer_ema and record.ema is not None
    generator.load_state_dict(record.ema if uses_ema else record.generator)
    if uses_ema:
        refresh_spectral_norm(generator)
    return RestoredRun(checkpoint=checkpoint, run_dir=run_dir, step=record.step, loaded=loaded,
                       assembly=assembly, generator=generator.eval(), uses_ema=uses_ema, record=record,
                       registry=registry)
