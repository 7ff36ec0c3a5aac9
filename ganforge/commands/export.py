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

Beside the file, ``export_generator`` writes its model card (``ganforge.commands.hub``: ``README.md``, or
``<stem>.md`` when a README.md not written by ganforge is there), ready to upload to the Hugging Face Hub.

safetensors itself stores only tensors and text, so loading a file from a stranger runs no code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import GanforgeError
from ..engine.export_format import FORMAT_NAME, FORMAT_VERSION, SUFFIX, read_export, tensor_digest
from ..engine.restore import RestoredExport, RestoredRun, restore, restore_export, warn_on_stderr

if TYPE_CHECKING:
    from ..registry import Registry

# Reading an export back (``read_export``, ``tensor_digest``: ``ganforge.engine.export_format``; ``restore_export``,
# ``RestoredExport``: ``ganforge.engine.restore``) lives in the engine; the names stay importable from here.
__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "SUFFIX", "RestoredExport", "export_generator", "read_export",
           "restore_export", "tensor_digest"]


def export_generator(target: str | Path, out: str | Path, *, ema: bool = True,
                     warn: Callable[[str], None] = warn_on_stderr,
                     registry: Registry | None = None, card: bool = True,
                     repo_id: str | None = None) -> tuple[RestoredRun, Path]:
    """Write the generator of ``target`` (run folder, checkpoint, export or ``hf://``) to ``out``, atomically.

    ``registry`` (default: the global one) resolves the stored blueprint's components (``restore``).
    ``card``: also write the model card beside ``out`` (``hub.write_model_card``; ``hub.card_path`` says
    where), with ``repo_id`` in its load lines when given."""
    from safetensors.torch import save_file

    from ..version import __version__
    from ..engine.durable import check_size, replacing

    out = Path(out)
    if out.suffix != SUFFIX:
        raise GanforgeError(f"--out {out}: an export is a {SUFFIX} file (name it e.g. model{SUFFIX})")
    run = restore(target, device="cpu", prefer_ema=ema, warn=warn, registry=registry)
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
    # A temporary file, its size checked against what was written, fsynced, then renamed: a full disk
    # (safetensors reports it as SafetensorError, or a buffered write loses it) leaves no file at ``out``.
    with replacing(out, what="export") as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
        check_size(temporary, _expected_size(temporary, tensors))
    if card:
        from .hub import write_model_card

        write_model_card(run, out, repo_id=repo_id)
    return run, out


def _expected_size(path: Path, tensors: dict) -> int:  # type: ignore[type-arg]
    """What a complete safetensors file of ``tensors`` measures: 8 bytes, its header (length read back), the data."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    header = int.from_bytes(head, "little") if len(head) == 8 else 0
    return 8 + header + sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
