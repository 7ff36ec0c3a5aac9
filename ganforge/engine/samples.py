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


def column_classes(n: int, num_classes: int, columns: int, *, start: int = 0,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Labels of images ``start``..``start+n-1`` of a grid ``columns`` wide: column c shows class c mod num_classes."""
    return ((torch.arange(start, start + n) % columns) % num_classes).to(device)


def grid_columns(n: int, num_classes: int = 0) -> int:
    """Columns of a grid of ``n`` images, chosen so that every row is full.

    The smallest divisor of ``n`` not below sqrt(n) (32 → 8×4, 64 → 8×8, 7 → one row of 7). When
    that shape is more elongated than 4:1 and wider than 16 (n prime or twice a prime, e.g. 34),
    it falls back to ceil(sqrt(n)) columns with a shorter last row. A class-conditional grid
    (``num_classes`` > 0) shows one class per column (see ``column_classes``); when
    there are more classes than those columns and ``num_classes`` divides ``n`` into a shape no
    more elongated than 4:1, it uses one column per class instead (40 images, 10 classes → 10×4).
    """
    if n <= 0:
        return 1
    columns = next(d for d in range(math.isqrt(n - 1) + 1, n + 1) if n % d == 0)
    rows = n // columns
    if columns > 16 and columns > 4 * rows:
        columns = math.isqrt(n - 1) + 1
    if num_classes > columns and n % num_classes == 0 and num_classes <= 4 * (n // num_classes):
        columns = num_classes
    return columns


def save_grid(images: torch.Tensor, path: Path, *, note: str | Callable[[], str] = "",
              columns: int | None = None) -> None:
    """Save images in [-1, 1] as one grid of ``columns`` (default ``grid_columns(n)``), written atomically.

    A write the OS refuses raises GanforgeError naming the path; ``note`` is added to its line.
    """
    from torchvision.utils import save_image

    temporary = path.with_name(path.stem + ".tmp.png")
    with writing(path, "sample grid", note=note):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            nrow = columns if columns is not None else grid_columns(images.shape[0])  # torchvision: per row
            save_image(images.clamp(-1, 1), temporary, nrow=nrow, normalize=True, value_range=(-1, 1), padding=1)
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
