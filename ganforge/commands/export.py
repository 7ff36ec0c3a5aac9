"""A trained generator as one ``.safetensors`` file: its weights and the resolved blueprint, nothing else.

``ganforge export RUN --out model.safetensors`` writes it; ``ganforge.load``, ``ganforge sample``
(and every command that restores a generator) read it back, recognised by the ``.safetensors`` suffix.

The file holds the generator's ``state_dict`` (the EMA copy by default when the run keeps one, with
spectral-norm ``u``/``v`` set to its own converged singular vectors; the live generator with
``--raw``) and no discriminator, optimiser, random or data-stream state. safetensors metadata is
str → str; the keys are:

* ``format``: ``"ganforge-generator"``; ``format_version``: ``"1"`` (newer versions are refused);
* ``generator``: ``"ema"`` or ``"raw"``; ``step``: the training step, as decimal text;
* ``blueprint``: the resolved blueprint document as JSON (the network is rebuilt from it alone);
* ``sha256``: the hex digest of every tensor's name, dtype, shape and bytes in name order, checked on load;
* ``ganforge_version`` and ``source`` (the checkpoint's file name): for people, not checked.

safetensors itself stores only tensors and text, so loading a file from a stranger runs no code.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import torch

from ..errors import GanforgeError
from ..engine.restore import RestoredRun, restore, warn_on_stderr

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "SUFFIX", "export_generator", "read_export", "restore_export"]

FORMAT_NAME = "ganforge-generator"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"


class RestoredExport(RestoredRun):
    """A ``RestoredRun`` from an exported file: the generator alone."""

    def discriminator(self, device: torch.device | str = "cpu"):  # type: ignore[no-untyped-def]
        raise GanforgeError(f"{self.checkpoint}: an exported file holds the generator only (no discriminator); "
                            "use the run's checkpoint")


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def export_generator(target: str | Path, out: str | Path, *, ema: bool = True,
                     warn: Callable[[str], None] = warn_on_stderr) -> tuple[RestoredRun, Path]:
    """Write the generator of ``target`` (run folder, checkpoint or export) to ``out``, atomically."""
    from safetensors.torch import save_file

    from .. import __version__
    from ..engine.samples import writing

    out = Path(out)
    if out.suffix != SUFFIX:
        raise GanforgeError(f"--out {out}: an export is a {SUFFIX} file (name it e.g. model{SUFFIX})")
    run = restore(target, device="cpu", prefer_ema=ema, warn=warn)
    tensors = {name: value.detach().cpu().clone().contiguous() for name, value in run.generator.state_dict().items()}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "generator": "ema" if run.uses_ema else "raw",
        "step": str(run.step),
        "blueprint": json.dumps(run.record.blueprint),
        "sha256": tensor_digest(tensors),
        "ganforge_version": __version__,
        "source": run.checkpoint.name,
    }
    temporary = out.with_name(out.name + ".tmp")
    with writing(out, "export"):
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(temporary), metadata=metadata)
            os.replace(temporary, out)
        except OSError:
            temporary.unlink(missing_ok=True)
            raise
    return run, out


def read_export(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a ganforge export; anything else is one GanforgeError line."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise GanforgeError(f"{path}: no such export file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as err:  # bad header, truncated file, not safetensors at all
        raise GanforgeError(f"{path}: not a readable safetensors file ({type(err).__name__}: {err})") from None
    if metadata.get("format") != FORMAT_NAME:
        raise GanforgeError(f"{path}: not a ganforge export (its metadata has no format {FORMAT_NAME!r}; "
                            "write one with `ganforge export RUN --out FILE.safetensors`)")
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) < 1:
        raise GanforgeError(f"{path}: unknown export format version {version!r}")
    if int(version) > FORMAT_VERSION:
        raise GanforgeError(f"{path}: export format {version} is newer than this ganforge reads "
                            f"(up to {FORMAT_VERSION}): upgrade ganforge to load it")
    recorded = metadata.get("sha256")
    if recorded is None or tensor_digest(tensors) != recorded:
        raise GanforgeError(f"{path}: checksum mismatch: the weights changed after the file was written")
    return tensors, metadata


def restore_export(target: str | Path, *, device: torch.device | str = "cpu", prefer_ema: bool = True,
                   warn: Callable[[str], None] = warn_on_stderr) -> RestoredExport:
    """``restore`` for an exported file: the generator it holds, in eval mode on ``device``."""
    from ..assembly import assemble
    from ..blueprint.validation import validate_document
    from ..engine.checkpoints import CheckpointRecord
    from ..registry import default_registry

    path = Path(target)
    tensors, metadata = read_export(path)
    try:
        document = json.loads(metadata.get("blueprint", ""))
        step = int(metadata.get("step", ""))
    except ValueError as err:
        raise GanforgeError(f"{path}: damaged export metadata ({err})") from None
    if not isinstance(document, dict):
        raise GanforgeError(f"{path}: damaged export metadata (the blueprint is not a mapping)")
    which = metadata.get("generator")
    if which not in ("ema", "raw"):
        raise GanforgeError(f"{path}: damaged export metadata (generator {which!r}, expected 'ema' or 'raw')")
    if not prefer_ema and which == "ema":
        warn(f"{path} holds the EMA generator only; the raw one was not exported (export it with --raw)")
    loaded = validate_document(document, file=f"{path} (stored blueprint)")
    assembly = assemble(loaded, default_registry())
    generator = assembly.generator.build(device, initialise=False)
    try:
        generator.load_state_dict(tensors)
    except RuntimeError as err:
        summary = " ".join(str(err).split())
        raise GanforgeError(f"{path}: its weights do not fit its blueprint's generator ({summary[:300]})") from None
    record = CheckpointRecord(step=step, generator=tensors if which == "raw" else {}, discriminator={},
                              blueprint=document, ema=tensors if which == "ema" else None)
    return RestoredExport(checkpoint=path, run_dir=path.parent, step=step, loaded=loaded, assembly=assembly,
                          generator=generator.eval(), uses_ema=which == "ema", record=record)
