"""Images in one sub-folder per class (the ImageNet train layout), or a flat folder for unconditional models."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from ...errors import GanforgeError
from ...registry import register

if TYPE_CHECKING:
    import torch

MAX_PIXELS = 89_478_485
"""Default ``data.max_pixels``: PIL's own ``Image.MAX_IMAGE_PIXELS`` (about 9459²). A larger image (a
decompression bomb, such as a 30000×30000 PNG a few KB on disk) is unreadable to ganforge: skipped and
counted like a corrupt file, never decoded. PIL's own limit (``Image.MAX_IMAGE_PIXELS``) applies too, warning
range included: the effective limit is the smaller of the two."""

UNREADABLE = (OSError, ValueError, SyntaxError)
"""What reading a truncated, corrupt or oversized image file raises (``UnreadableImage`` is an ``OSError``)."""


class UnreadableImage(OSError):
    """An image file ganforge will not decode: over the pixel limit (a decompression bomb)."""


def open_image(path: str | os.PathLike[str], *, mode: str, max_pixels: int = MAX_PIXELS) -> Any:
    """``path`` decoded and converted to PIL ``mode``; raises one of ``UNREADABLE`` for any bad file.

    Images over ``max_pixels``, or over PIL's ``Image.MAX_IMAGE_PIXELS`` (where PIL only warns, below twice
    that, or raises ``DecompressionBombError``), raise ``UnreadableImage`` before any pixel is decoded. The
    warning filter is changed only inside this call.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open(path, "rb") as handle:
                image = Image.open(handle)
                width, height = image.size
                if width * height > max_pixels:
                    raise UnreadableImage(f"{path}: {width}×{height} = {width * height} pixels, over the limit of "
                                          f"{max_pixels} (data.max_pixels)")
                return image.convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UnreadableImage(f"{path}: {err}") from None


class SkippingImageFolder:
    """torchvision's ImageFolder, but an unreadable file is replaced by the next readable one.

    Each item is ``(image, label, skipped)``; the engine adds up ``skipped`` to log how many
    files were bad and to stop once more than ``max_skipped`` were.
    """

    def __init__(self, folder: Any, *, max_skipped: int) -> None:
        self.folder = folder
        self.max_skipped = max_skipped
        self.classes = folder.classes

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        import torch

        for skipped in range(min(len(self.folder), 64)):
            try:
                image, label = self.folder[(index + skipped) % len(self.folder)]
                return image, label, torch.tensor(skipped)
            except UNREADABLE:  # truncated, corrupt or oversized files
                continue
        raise GanforgeError(f"64 unreadable images in a row near {self.folder.samples[index][0]}: is data.root right?")


@register("dataset", "imagefolder")
def imagefolder(*, root: str | None = None, resolution: Annotated[int, Field(ge=4)],
                channels: Annotated[int, Field(ge=1, le=4)] = 3, num_classes: Annotated[int, Field(ge=0)] = 0,
                flip: bool = True, max_skipped: Annotated[int, Field(ge=0)] = 1000,
                max_pixels: Annotated[int, Field(ge=1)] = MAX_PIXELS) -> object:
    """A folder of class sub-folders, resized and centre-cropped to ``resolution`` (images in [-1, 1]).

    With ``num_classes: 0`` a flat folder of images (e.g. CelebA's img_align_celeba) also works,
    every image labelled 0. Hidden files and folders (such as ``.ganforge_stats``) are never read
    and never count as classes, exactly as in ``ganforge prepare``; symlinked folders are followed,
    each real folder read once (a link loop adds nothing). Unreadable images (corrupt, truncated, or over
    ``max_pixels`` pixels: see ``MAX_PIXELS``) are skipped and counted; more than ``max_skipped`` stops the run.
    """
    if not root:
        raise GanforgeError("data.root is not set: pass --set data.root=/path/to/train (one sub-folder per class, "
                            "or a flat folder of images when data.num_classes is 0)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise GanforgeError(f"data.root {root!r} is not a directory: set data.root to the image folder")
    from .prepare import list_images

    if _class_folders(path):
        listing = list_images(path)
        classes, samples = listing.classes, [(str(path / rel), label) for rel, label in listing.files]
    elif num_classes:
        raise GanforgeError(
            f"data.root {root!r} has no class sub-folders but data.num_classes is {num_classes}: a class-conditional "
            "blueprint needs one sub-folder per class; to train unconditionally on a flat folder of images, "
            "pass --set data.num_classes=0"
        )
    else:
        classes, samples = [""], [(str(path / name), 0) for name in _flat_images(path)]
    if not samples:
        raise GanforgeError(f"data.root {root!r} has no image files ({', '.join(_extensions())})")
    if num_classes and len(classes) != num_classes:
        raise GanforgeError(
            f"data.root {root!r} has {len(classes)} class folders but data.num_classes is {num_classes}"
        )
    folder = _Folder(samples, classes=classes, transform=image_transform(resolution, channels, flip=flip),
                     loader=_Loader(colour_mode(channels), max_pixels=max_pixels))
    return SkippingImageFolder(folder, max_skipped=max_skipped)


def _class_folders(path: Path) -> list[str]:
    """Non-hidden sub-folders: torchvision's ImageFolder would also count ``.ganforge_stats``."""
    with os.scandir(path) as entries:
        return [e.name for e in entries if not e.name.startswith(".") and e.is_dir()]


def _extensions() -> tuple[str, ...]:
    from .prepare import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


def _flat_images(path: Path) -> list[str]:
    """Image files directly in ``path``, sorted, hidden ones (e.g. macOS ``._x.jpg``) left out."""
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries
                      if not e.name.startswith(".") and e.name.lower().endswith(_extensions()) and e.is_file())


class _Folder:
    """(path, label) samples read with a loader and transform: torchvision's ImageFolder without its listing."""

    def __init__(self, samples: list[tuple[str, int]], *, classes: list[str], transform: Any, loader: Any) -> None:
        self.samples, self.classes, self.transform, self.loader = samples, classes, transform, loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        return self.transform(self.loader(path)), label


def colour_mode(channels: int) -> str:
    """The PIL mode an image is converted to for ``channels`` (1: L, 2: LA, 3: RGB, 4: RGBA)."""
    return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]


def image_transform(resolution: int, channels: int, *, flip: bool) -> Any:
    """Resize the short side, centre-crop to ``resolution``², optional flip, then scale to [-1, 1]."""
    from torchvision import transforms

    steps: list[Any] = [transforms.Resize(resolution), transforms.CenterCrop(resolution)]
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize([0.5] * channels, [0.5] * channels)]
    return transforms.Compose(steps)


class _Loader:
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
