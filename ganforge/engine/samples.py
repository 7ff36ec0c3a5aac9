"""Sample grids as PNG files."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..errors import GanforgeError


@contextlib.contextmanager
def writing(path: Path, what: str, *, note: str | Callable[[], str] = "") -> Iterator[None]:
    """Turn a failed write (read-only folder, a file where a folder belongs, disk full) into one line.

    The line names ``path`` and, when it differs, the path the OS refused (``err.filename``);
    ``note`` (or what it returns, asked only on failure) ends the line.
    """
    try:
        yield
    except OSError as err:
        where = err.filename if err.filename else path
        message = f"cannot write {what} {path}: {err.strerror or err}"
        if str(where) != str(path):
            message += f" ({where})"
        text = note() if callable(note) else note
        raise GanforgeError(message + (f"; {text}" if text else "")) from None


def save_grid(images: torch.Tensor, path: Path, *, note: str | Callable[[], str] = "") -> None:
    """Save images in [-1, 1] as one square-ish grid, written atomically.

    A write the OS refuses raises GanforgeError naming the path; ``note`` is added to its line.
    """
    from torchvision.utils import save_image

    temporary = path.with_name(path.stem + ".tmp.png")
    with writing(path, "sample grid", note=note):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = max(1, int(math.sqrt(images.shape[0])))
            save_image(images.clamp(-1, 1), temporary, nrow=rows, normalize=True, value_range=(-1, 1), padding=1)
            temporary.replace(path)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise


def save_images(images: torch.Tensor, folder: Path) -> list[Path]:
    """Save each image in [-1, 1] as its own PNG (``000000.png``, ...)."""
    from torchvision.utils import save_image

    paths = []
    with writing(folder, "images to"):
        folder.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(images):
            path = folder / f"{index:06d}.png"
            save_image(image.clamp(-1, 1), path, normalize=True, value_range=(-1, 1))
            paths.append(path)
    return paths
