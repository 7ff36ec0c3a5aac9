"""Images in one sub-folder per class: the ImageNet train layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from ..errors import GanforgeError
from ..registry import register


@register("dataset", "imagefolder")
def imagefolder(*, root: str | None = None, resolution: Annotated[int, Field(ge=4)],
                channels: Annotated[int, Field(ge=1, le=4)] = 3, num_classes: Annotated[int, Field(ge=0)] = 0,
                flip: bool = True) -> object:
    """A folder of class sub-folders, resized and centre-cropped to ``resolution`` (images in [-1, 1])."""
    if not root:
        raise GanforgeError("data.root is not set: pass --set data.root=/path/to/train (one sub-folder per class)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise GanforgeError(f"data.root {root!r} is not a directory: set data.root to the image folder")
    if not any(p.is_dir() for p in path.iterdir()):
        raise GanforgeError(f"data.root {root!r} has no class sub-folders: set data.root to a folder like ILSVRC2012/train")
    from torchvision import datasets, transforms

    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels, "RGB")
    steps = [transforms.Resize(resolution), transforms.CenterCrop(resolution)]
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize([0.5] * channels, [0.5] * channels)]
    dataset = datasets.ImageFolder(str(path), transform=transforms.Compose(steps),
                                   loader=lambda p: datasets.folder.default_loader(p).convert(mode))
    if num_classes and len(dataset.classes) != num_classes:
        raise GanforgeError(
            f"data.root {root!r} has {len(dataset.classes)} class folders but data.num_classes is {num_classes}"
        )
    return dataset
