"""The ``.safetensors`` export format: its constants, its checksum, and reading a file back.

``ganforge.commands.export`` writes these files; ``ganforge.engine.restore`` reads them (``restore``
recognises one by the ``.safetensors`` suffix). The format is described in ``ganforge.commands.export``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..errors import GanforgeError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "SUFFIX", "read_export", "tensor_digest"]

FORMAT_NAME = "ganforge-generator"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"


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
    if not version.isdigit() or int(version) < 1:
        raise GanforgeError(f"{path}: unknown export format version {version!r}")
    if int(version) > FORMAT_VERSION:
        raise GanforgeError(f"{path}: export format {version} is newer than this ganforge reads "
                            f"(up to {FORMAT_VERSION}): upgrade ganforge to load it")
    recorded = metadata.get("sha256")
    if recorded is None or tensor_digest(tensors) != recorded:
        raise GanforgeError(f"{path}: checksum mismatch: the weights changed after the file was written")
    return tensors, metadata
