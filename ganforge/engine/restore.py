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
from ..memory_estimate import check_weights
from ..components.layers.spectral_norm import refresh_spectral_norm
from ..registry import Registry, default_registry
from .checkpoints import CheckpointRecord, read_checkpoint, read_newest_valid, unreadable_reason
from .export_format import SUFFIX, export_blueprint, export_step, read_export
from .hub_cache import hub_file, is_hub_target
from .run_dir import RunDir


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
        network = build_restored(self.assembly, "discriminator", device)
        network.load_state_dict(self.record.discriminator)
        return network.eval()


class RestoredExport(RestoredRun):
    """A ``RestoredRun`` from an exported file: the generator alone."""

    def discriminator(self, device: torch.device | str = "cpu"):  # type: ignore[no-untyped-def]
        raise GanforgeError(f"{self.checkpoint}: an exported file holds the generator only (no discriminator); "
                            "use the run's checkpoint")


def build_restored(assembly: Assembly, role: str, device: torch.device | str) -> Network:
    """``role``'s network, uninitialised, for weights about to be loaded: refused first (``check_weights``)
    when its weights cannot fit on ``device``."""
    plan = getattr(assembly, role)
    check_weights(plan, device, assembly=assembly)
    return plan.build(device, initialise=False)


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
            reason = unreadable_reason(path, err)
            raise GanforgeError(f"{path}: not a readable ganforge checkpoint ({reason})") from None
    if path.is_dir():
        checkpoints = RunDir(path).checkpoints
        folder = checkpoints if checkpoints.is_dir() else path
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
    ``hf://ORG/NAME`` is an export on the Hub, resolved through its local cache (``hub_cache``).
    ``registry`` (default: the global one) resolves the stored blueprint's components, of a checkpoint
    or an export alike; it is kept on the result, so evaluating the run uses it too.
    """
    if is_hub_target(target):  # hf://ORG/NAME: an export in (or downloaded to) the Hugging Face cache
        target = hub_file(str(target))
    if Path(target).suffix == SUFFIX:
        return restore_export(target, device=device, prefer_ema=prefer_ema, warn=warn, registry=registry)
    checkpoint, record = find_record(target, warn=warn)
    run_dir = RunDir.of_checkpoint(checkpoint).root
    loaded = validate_document(record.blueprint, file=f"{checkpoint} (stored blueprint)")
    registry = default_registry() if registry is None else registry
    assembly = assemble(loaded, registry)
    generator = build_restored(assembly, "generator", device)
    uses_ema = prefer_ema and record.ema is not None
    generator.load_state_dict(record.ema if uses_ema else record.generator)
    if uses_ema:
        refresh_spectral_norm(generator)
    return RestoredRun(checkpoint=checkpoint, run_dir=run_dir, step=record.step, loaded=loaded,
                       assembly=assembly, generator=generator.eval(), uses_ema=uses_ema, record=record,
                       registry=registry)


def restore_export(target: str | Path, *, device: torch.device | str = "cpu", prefer_ema: bool = True,
                   warn: Callable[[str], None] = warn_on_stderr, registry: Registry | None = None) -> RestoredExport:
    """``restore`` for an exported file: the generator it holds, in eval mode on ``device``.

    ``registry`` (default: the global one) resolves the stored blueprint's components and is kept on the result.
    """
    path = Path(target)
    tensors, metadata = read_export(path)
    document, step = export_blueprint(metadata, path), export_step(metadata, path)
    which = metadata.get("generator")
    if which not in ("ema", "raw"):
        raise GanforgeError(f"{path}: damaged export metadata (generator {str(which)[:40]!r}, expected 'ema' or "
                            "'raw')")
    if not prefer_ema and which == "ema":
        warn(f"{path} holds the EMA generator only; the raw one was not exported (export it with --raw)")
    loaded = validate_document(document, file=f"{path} (stored blueprint)")
    registry = default_registry() if registry is None else registry
    assembly = assemble(loaded, registry)
    generator = build_restored(assembly, "generator", device)
    try:
        generator.load_state_dict(tensors)
    except RuntimeError as err:
        summary = " ".join(str(err).split())
        raise GanforgeError(f"{path}: its weights do not fit its blueprint's generator ({summary[:300]})") from None
    record = CheckpointRecord(step=step, generator=tensors if which == "raw" else {}, discriminator={},
                              blueprint=document, ema=tensors if which == "ema" else None)
    return RestoredExport(checkpoint=path, run_dir=path.parent, step=step, loaded=loaded, assembly=assembly,
                          generator=generator.eval(), uses_ema=which == "ema", record=record, registry=registry)
