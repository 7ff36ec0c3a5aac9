"""Images in one sub-folder per class (the ImageNet train layout), or a flat folder for unconditional models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from ...errors import GanforgeError
from ...registry import register
from .images import (  # noqa: F401  (the pipeline's names, importable from here as before)
    IMAGE_EXTENSIONS, MAX_PIXELS, UNREADABLE, ImageFiles, Loader, UnreadableImage, class_folders, colour_mode,
    flat_images, image_transform, list_images, open_image,
)


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
    if class_folders(path):
        listing = list_images(path)
        classes, samples = listing.classes, [(str(path / rel), label) for rel, label in listing.files]
    elif num_classes:
        raise GanforgeError(
            f"data.root {root!r} has no class sub-folders but data.num_classes is {num_classes}: a class-conditional "
            "blueprint needs one sub-folder per class; to train unconditionally on a flat folder of images, "
            "pass --set data.num_classes=0"
        )
    else:
        classes, samples = [""], [(str(path / name), 0) for name in flat_images(path)]
    if not samples:
        raise GanforgeError(f"data.root {root!r} has no image files ({', '.join(IMAGE_EXTENSIONS)})")
    if num_classes and len(classes) != num_classes:
        raise GanforgeError(
            f"data.root {root!r} has {len(classes)} class folders but data.num_classes is {num_classes}"
        )
    folder = _Folder(samples, classes=classes, transform=image_transform(resolution, channels, flip=flip),
                     loader=Loader(colour_mode(channels), max_pixels=max_pixels))
    return SkippingImageFolder(folder, max_skipped=max_skipped)


class _Folder:
    """(path, label) samples read with a loader and transform: torchvision's ImageFolder without its listing."""

    def __init__(self, samples: list[tuple[str, int]], *, classes: list[str], transform: Any, loader: Any) -> None:
        self.samples, self.classes, self.transform, self.loader = samples, classes, transform, loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        return self.transform(self.loader(path)), label
