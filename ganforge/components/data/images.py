"""The one image pipeline: list the files, open each within the pixel limits, decode, resize, crop.

``imagefolder`` (training), ``ganforge prepare`` (uint8 shards) and ``ganforge evaluate --reference DIR``
all read images through this module, so they see the same files and the same pixels:

* listing: ``list_images`` (class sub-folders), ``class_folders`` / ``flat_images`` (imagefolder's two
  layouts), ``image_files`` (any layout); hidden entries skipped, symlinked folders followed once each;
* opening: ``open_image``, refusing images over ``max_pixels`` or PIL's own limit (``UnreadableImage``)
  before a pixel is decoded, then converting to the ``colour_mode`` of the channel count;
* resizing: ``resize_and_crop`` (short side to the resolution, bilinear, then a centre square), as a
  uint8 array (``load_image``) or, with flip and scaling to [-1, 1], a tensor (``image_transform``).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import GanforgeError
from .files import open_regular

if TYPE_CHECKING:
    import torch

__all__ = [
    "IMAGE_EXTENSIONS", "MAX_PIXELS", "UNREADABLE", "ImageFiles", "Listing", "Loader", "ResizeAndCrop",
    "UnreadableImage", "class_folders", "colour_mode", "flat_images", "image_files", "image_transform",
    "list_images", "load_image", "open_image", "resize_and_crop",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""torchvision's ``IMG_EXTENSIONS``: the files ``imagefolder`` and ``prepare`` read, so both see the same images."""

MAX_PIXELS = 89_478_485
"""Default ``data.max_pixels``: PIL's own ``Image.MAX_IMAGE_PIXELS`` (about 9459²). A larger image (a
decompression bomb, such as a 30000×30000 PNG a few KB on disk) is unreadable to ganforge: skipped and
counted like a corrupt file, never decoded. PIL's own limit (``Image.MAX_IMAGE_PIXELS``) applies too, warning
range included: the effective limit is the smaller of the two."""

UNREADABLE = (OSError, ValueError, SyntaxError)
"""What reading a truncated, corrupt or oversized image file raises (``UnreadableImage`` is an ``OSError``)."""


class UnreadableImage(OSError):
    """An image file ganforge will not decode: over the pixel limit (a decompression bomb).

    ``cause`` is PIL's own ``DecompressionBombError`` or ``DecompressionBombWarning`` when PIL refused it
    (None when ``max_pixels`` did): ``ganforge prepare`` lists that one among the skipped files.
    """

    cause: Exception | None = None


def open_image(path: str | os.PathLike[str], *, mode: str, max_pixels: int = MAX_PIXELS) -> Any:
    """``path`` decoded and converted to PIL ``mode``; raises one of ``UNREADABLE`` for any bad file.

    Images over ``max_pixels``, or over PIL's ``Image.MAX_IMAGE_PIXELS`` (where PIL only warns, below twice
    that, or raises ``DecompressionBombError``), raise ``UnreadableImage`` before any pixel is decoded. The
    warning filter is changed only inside this call. Only a regular file is opened (``NotRegularFile``, an
    ``OSError``, otherwise): a FIFO named ``x.png`` would block the read forever.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings(), open_regular(path) as handle:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(handle) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise UnreadableImage(f"{path}: {width}×{height} = {width * height} pixels, over the limit of "
                                          f"{max_pixels} (data.max_pixels)")
                return image.convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        error = UnreadableImage(f"{path}: {err}")
        error.cause = err
        raise error from None
    except Image.UnidentifiedImageError:  # PIL names the file object; name the path, as Image.open(path) does
        raise Image.UnidentifiedImageError(f"cannot identify image file {os.fspath(path)!r}") from None


# --- listing ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Listing:
    """The images under a data root, in training order: sorted classes, then sorted paths."""

    root: Path
    classes: list[str]
    files: list[tuple[str, int]]  # (path relative to root, class index)

    @property
    def fingerprint(self) -> str:
        """Changes when a file is added, removed, renamed, resized or relabelled."""
        digest = hashlib.sha256()
        for relative, label in self.files:
            try:
                size = (self.root / relative).stat().st_size
            except OSError:  # a dangling link: listed, then skipped and counted when it cannot be opened
                size = -1
            digest.update(f"{label}\t{relative}\t{size}\n".encode())
        return digest.hexdigest()


def list_images(root: Path, *, exclude: Path | None = None) -> Listing:
    """Class sub-folders of ``root`` and their image files, skipping hidden entries.

    Symlinked folders are followed, but each real folder is visited once, so link loops end.
    """
    info = os.stat(root)
    seen = {(info.st_dev, info.st_ino)}  # a link back to the root is not a second copy of the data
    classes = sorted(entry.name for entry in os.scandir(root)
                     if entry.is_dir() and not entry.name.startswith(".")
                     and (exclude is None or Path(entry.path).resolve() != exclude))
    if not classes:
        raise GanforgeError(f"DATA_ROOT {str(root)!r} has no class sub-folders: point it at a folder like "
                            "ILSVRC2012/train (one sub-folder per class)")
    files: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        folders: list[tuple[str, list[str]]] = []
        try:
            _walk(root / name, seen, folders)
        except OSError as err:
            raise GanforgeError(f"cannot list {str(root / name)!r}: {err.strerror or err}") from None
        for folder, names in sorted(folders):  # torchvision's order: sorted folders, then sorted names
            files += [(os.path.relpath(os.path.join(folder, n), root), label) for n in sorted(names)]
    return Listing(root=root, classes=classes, files=files)


def _walk(folder: Path, seen: set[tuple[int, int]], out: list[tuple[str, list[str]]]) -> None:
    stack = [str(folder)]
    while stack:
        here = stack.pop()
        info = os.stat(here)
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        names, folders = [], []
        with os.scandir(here) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    folders.append(entry.path)
                elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    names.append(entry.name)
        stack += sorted(folders, reverse=True)  # a fixed visiting order decides which link path a folder gets
        out.append((here, names))


def image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder``, any layout, sorted; hidden entries skipped.

    Symlinked folders are followed, each real folder visited once (as in ``list_images``), so a
    link loop cannot repeat files. An unreadable folder raises ``GanforgeError``.
    """
    found: list[tuple[str, list[str]]] = []
    try:
        _walk(Path(folder), set(), found)
    except OSError as err:
        raise GanforgeError(f"cannot list {str(folder)!r}: {err.strerror or err}") from None
    return sorted(Path(here) / name for here, names in found for name in names)


def class_folders(path: Path) -> list[str]:
    """Non-hidden sub-folders: torchvision's ImageFolder would also count ``.ganforge_stats``."""
    with os.scandir(path) as entries:
        return [e.name for e in entries if not e.name.startswith(".") and e.is_dir()]


def flat_images(path: Path) -> list[str]:
    """Image files directly in ``path``, sorted, hidden ones (e.g. macOS ``._x.jpg``) left out."""
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries
                      if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file())


# --- one image -------------------------------------------------------------------------------------
def colour_mode(channels: int) -> str:
    """The PIL mode an image is converted to for ``channels`` (1: L, 2: LA, 3: RGB, 4: RGBA)."""
    return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]


def resize_and_crop(image: Any, resolution: int) -> Any:
    """Resize the short side to ``resolution`` (bilinear, antialiased) and centre-crop a square.

    The arithmetic of torchvision's ``Resize(resolution)`` + ``CenterCrop(resolution)`` on PIL images
    (what ``imagefolder`` applied before it used this function), without importing torch into every
    ``prepare`` worker; ``tests/test_images.py`` checks that the pixels are equal.
    """
    from PIL import Image

    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(resolution * long / short)
    size = (resolution, new_long) if width <= height else (new_long, resolution)
    if size != (width, height):
        image = image.resize(size, Image.BILINEAR)
    width, height = size
    top, left = int(round((height - resolution) / 2.0)), int(round((width - resolution) / 2.0))
    if (width, height) != (resolution, resolution):
        image = image.crop((left, top, left + resolution, top + resolution))
    return image


def load_image(path: str, *, resolution: int, mode: str, max_pixels: int = MAX_PIXELS) -> Any:
    """One file as a C×H×W uint8 array; raises on anything unreadable, decompression bombs and images
    over ``max_pixels`` included (``open_image``)."""
    import numpy as np
    from PIL import Image

    image = open_image(path, mode=mode, max_pixels=max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # PIL's crop checks its size against the limit too
        pixels = np.asarray(resize_and_crop(image, resolution), dtype=np.uint8)
    return (pixels[:, :, None] if pixels.ndim == 2 else pixels).transpose(2, 0, 1)


class ResizeAndCrop:
    """``resize_and_crop`` as a transform step (picklable for data-loader workers)."""

    def __init__(self, resolution: int) -> None:
        self.resolution = resolution

    def __call__(self, image: Any) -> Any:
        return resize_and_crop(image, self.resolution)


def image_transform(resolution: int, channels: int, *, flip: bool) -> Any:
    """``resize_and_crop`` to ``resolution``², optional flip, then scale to [-1, 1] (a C×H×W float tensor)."""
    from torchvision import transforms

    steps: list[Any] = [ResizeAndCrop(resolution)]
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize([0.5] * channels, [0.5] * channels)]
    return transforms.Compose(steps)


class Loader:
    """Open an image and convert it to the blueprint's channel mode (picklable for workers)."""

    def __init__(self, mode: str, *, max_pixels: int = MAX_PIXELS) -> None:
        self.mode, self.max_pixels = mode, max_pixels

    def __call__(self, path: str) -> Any:
        return open_image(path, mode=self.mode, max_pixels=self.max_pixels)


class ImageFiles:
    """The given image files (any layout), resized and centre-cropped, in [-1, 1], label 0: a reference set."""

    def __init__(self, paths: list[Path], *, resolution: int, channels: int) -> None:
        self.paths = paths
        self.mode = colour_mode(channels)
        self.transform = image_transform(resolution, channels, flip=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Raises one of ``UNREADABLE`` for a bad file; the reference extraction skips and counts it."""
        return self.transform(open_image(self.paths[index], mode=self.mode)), 0
