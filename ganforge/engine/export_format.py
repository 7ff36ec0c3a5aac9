"""The ``.safetensors`` export format: its constants, its checksum, and reading a file back.

``ganforge.commands.export`` writes these files; ``ganforge.engine.restore`` reads them (``restore``
recognises one by the ``.safetensors`` suffix). The format is described in ``ganforge.commands.export``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import GanforgeError
from ..json_depth import json_depth

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "SUFFIX", "export_blueprint", "export_step", "read_export",
           "tensor_digest"]

FORMAT_NAME = "ganforge-generator"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
MAX_BLUEPRINT_CHARS = 4 * 1024 * 1024  # a resolved blueprint is a few KiB; its YAML chain is at most 1 MiB
_DECIMAL = re.compile(r"[0-9]{1,18}")  # ASCII digits only (``re``'s \d and str.isdigit take any script's)


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


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
    if not _DECIMAL.fullmatch(version) or int(version) < 1:  # ASCII only: '١'.isdigit() is True, and int() takes it
        raise GanforgeError(f"{path}: unknown export format version {version[:40]!r}")
    if int(version) > FORMAT_VERSION:
        raise GanforgeError(f"{path}: export format {version} is newer than this ganforge reads "
                            f"(up to {FORMAT_VERSION}): upgrade ganforge to load it")
    recorded = metadata.get("sha256")
    if recorded is None or tensor_digest(tensors) != recorded:
        raise GanforgeError(f"{path}: checksum mismatch: the weights changed after the file was written")
    return tensors, metadata


def export_step(metadata: dict[str, str], path: Path) -> int:
    """The training step an export records: ASCII decimal text, or one GanforgeError line."""
    text = metadata.get("step", "")
    if not _DECIMAL.fullmatch(text):
        raise GanforgeError(f"{path}: damaged export metadata (step {text[:40]!r} is not a decimal number)")
    return int(text)


def export_blueprint(metadata: dict[str, str], path: Path) -> dict[str, Any]:
    """The resolved blueprint an export records, parsed with bounds: a mapping, at most ``MAX_NESTING`` deep.

    The depth is counted before ``json.loads`` runs, so a deeply nested list or object is refused
    in one line instead of exhausting the parser's recursion.
    """
    from ..blueprint.loading import MAX_NESTING

    text = metadata.get("blueprint", "")
    if len(text) > MAX_BLUEPRINT_CHARS:
        raise GanforgeError(f"{path}: damaged export metadata (the blueprint is {len(text):,} characters, "
                            f"more than {MAX_BLUEPRINT_CHARS:,})")
    if json_depth(text) > MAX_NESTING:
        raise GanforgeError(f"{path}: damaged export metadata (the blueprint is nested more than {MAX_NESTING} "
                            "levels deep)")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise GanforgeError(f"{path}: damaged export metadata (the blueprint is not JSON: {err})") from None
    if not isinstance(document, dict):
        raise GanforgeError(f"{path}: damaged export metadata (the blueprint is not a mapping)")
    return document


