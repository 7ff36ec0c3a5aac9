"""CIFAR-10 and CIFAR-100 as torchvision downloads them: the python-pickle batch folders, read in place.

``root`` is the folder that contains ``cifar-10-batches-py`` (or ``cifar-100-python``), as torchvision's
``root`` is, or that batch folder itself. The files are read by torchvision's own ``CIFAR10`` /
``CIFAR100`` classes, with two changes made by subclassing (``_reader``):

* torchvision's ``_check_integrity`` compares every file's MD5 with the official download's, and needs the
  other split's files too (torchvision 0.29.1 ``datasets/cifar.py:129-132``, read from the installed
  package). A folder that is not the exact download (a subset, a re-export, the small folders the tests
  write) would be refused with "Dataset not found or corrupted", naming no file. The
  override checks the files of the one split instead: each must be a regular file and a well-formed CIFAR
  pickle (``read_batch``), or one ``GanforgeError`` names the file and the key. The MD5s are set to None,
  which torchvision's ``check_integrity`` reads as "existence only", so ``_load_meta`` skips them too
  (``cifar.py:95-97``).
* ``base_folder`` is the folder found under ``root`` (any name, when ``root`` is the batch folder itself).

Trust: the batch files are Python pickles, and torchvision unpickles them with ``pickle.load``
(``cifar.py:83``, ``:100``), which can run code. A CIFAR folder is therefore trusted input, like a
checkpoint. As a guard, ganforge first parses
each file with an unpickler that resolves only the names a CIFAR batch uses (numpy's array
reconstruction, ``_codecs.encode``), so a file that names anything else is refused before torchvision
reads it. Files that are not regular files (a FIFO would block the read) are refused.

Cost: each file is parsed twice (the check, then torchvision), about 5 s for CIFAR-10's 50,000 training
images on one core, once per run; the split is then held in memory (150 MB) and sliced per batch.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

from pydantic import Field

from ...errors import GanforgeError
from ...registry import register
from .files import open_regular, os_reason
from .images import colour_mode, resize_and_crop

NATIVE = 32
"""CIFAR's own resolution: at ``resolution: 32`` and 3 channels the pixels are used as stored."""

FOLDERS = (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"))
"""The batch folder torchvision downloads each set into."""
METAS = (("cifar10", "batches.meta"), ("cifar100", "meta"))
"""Each set's meta file (the class names)."""
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})
"""What a CIFAR batch pickle names: numpy arrays (Python 2's ``numpy.core`` or numpy 2's ``numpy._core``),
numpy scalars, and ``_codecs.encode`` (how Python 3 writes bytes at pickle protocol 2)."""
UNREADABLE = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
              MemoryError, OverflowError, UnicodeDecodeError)


def _folder(name: str) -> str:
    return dict(FOLDERS)[name]


def _meta(name: str) -> str:
    return dict(METAS)[name]


class _Refused(pickle.UnpicklingError):
    """A pickle that names something other than ``ALLOWED_GLOBALS``."""


class _CifarUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only ``ALLOWED_GLOBALS`` (numpy.core mapped to numpy._core)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise _Refused(f"it names {module}.{name}, which a CIFAR batch never does (only numpy arrays "
                           "and lists are allowed)")
        if module == "numpy.core.multiarray":  # Python 2's name; numpy 2 warns on it
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def read_batch(path: Path) -> dict[str, Any]:
    """One batch or meta file as torchvision reads it (``encoding="latin1"``), through the allowlisting
    unpickler; raises one ``GanforgeError`` naming ``path`` when it is missing, not a regular file, not a
    pickle, or not a dict."""
    try:
        handle = open_regular(path)
    except OSError as err:
        reason = ("missing (every file of the split, as torchvision downloads it, is needed)"
                  if isinstance(err, FileNotFoundError) else os_reason(err))
        raise GanforgeError(f"{path}: {reason}") from None
    with handle:
        try:
            entry = _CifarUnpickler(handle, encoding="latin1").load()
        except _Refused as err:
            raise GanforgeError(f"{path}: refused: {err}") from None
        except OSError as err:
            raise GanforgeError(f"{path}: cannot read: {os_reason(err)}") from None
        except UNREADABLE as err:
            message = " ".join(str(err).split())[:200]
            raise GanforgeError(f"{path}: not a readable CIFAR pickle ({type(err).__name__}: {message})") from None
    if not isinstance(entry, dict):
        raise GanforgeError(f"{path}: holds a {type(entry).__name__}, not the dict of a CIFAR batch")
    return entry


@dataclass(frozen=True)
class Layout:
    """Which files of a CIFAR folder one split reads, and under which keys."""

    name: str  # cifar10 | cifar100
    folder: Path  # the batch folder itself
    split: str
    label: str  # fine | coarse (cifar100); "" for cifar10

    @property
    def batches(self) -> list[str]:
        if self.name == "cifar10":
            return [f"data_batch_{i}" for i in range(1, 6)] if self.split == "train" else ["test_batch"]
        return [self.split]

    @property
    def labels_key(self) -> str:
        return "labels" if self.name == "cifar10" else f"{self.label}_labels"

    @property
    def names_key(self) -> str:
        return "label_names" if self.name == "cifar10" else f"{self.label}_label_names"


def locate(root: str | None, *, name: str, split: str, label: str = "") -> Layout:
    """The batch folder under ``root`` (or ``root`` itself when it holds the meta file)."""
    if not root:
        raise GanforgeError(f"data.root is not set: pass --set data.root=/path/to/folder (the folder holding "
                            f"{_folder(name)}, as torchvision's root)")
    path = Path(root).expanduser()
    if not path.is_dir():
        what = "no such folder" if not path.exists() else "not a directory"
        raise GanforgeError(f"data.root {str(path)!r}: {what}: set it to the folder holding {_folder(name)}")
    if (path / _folder(name)).is_dir():
        path = path / _folder(name)
    elif not (path / _meta(name)).exists():
        raise GanforgeError(f"data.root {str(path)!r} holds no {_folder(name)} folder and no {_meta(name)} file: "
                            f"point it at the folder torchvision downloads {name} into (or at {_folder(name)})")
    return Layout(name=name, folder=path, split=split, label=label if name == "cifar100" else "")


def check_layout(layout: Layout) -> tuple[list[str], list[Any]]:
    """The class names and each batch's labels (under ``layout.labels_key``), after checking every file of
    the split: a dict with ``data`` (uint8, N×3072) and one in-range integer label per row."""
    import numpy as np

    meta_path = layout.folder / _meta(layout.name)
    names = read_batch(meta_path).get(layout.names_key)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise GanforgeError(f"{meta_path}: key {layout.names_key!r} must be a non-empty list of class names")
    labels = []
    for batch in layout.batches:
        path = layout.folder / batch
        entry = read_batch(path)
        data = entry.get("data")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            shown = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
            raise GanforgeError(f"{path}: key 'data' must be a uint8 array of N×3072 (3×32×32) pixels, got {shown}"
                                + ("" if data is not None else f"; keys: {sorted(map(str, entry))}"))
        values = entry.get(layout.labels_key)
        try:
            array = np.asarray(values)
        except (ValueError, TypeError):
            array = np.asarray([])
        if values is None or array.ndim != 1 or len(array) != len(data) or not (
                np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_):
            raise GanforgeError(f"{path}: key {layout.labels_key!r} must hold one integer label per row of 'data' "
                                f"({len(data)})")
        if len(array) and (array.min() < 0 or array.max() >= len(names)):
            bad = int(array.min()) if array.min() < 0 else int(array.max())
            raise GanforgeError(f"{path}: key {layout.labels_key!r} holds label {bad}, outside 0..{len(names) - 1} "
                                f"({len(names)} classes in {_meta(layout.name)})")
        labels.append(array.astype(np.int64))
    return names, labels


def _reader(layout: Layout) -> Any:
    """torchvision's class for ``layout.name``, its MD5 check replaced by ``check_layout`` (module docstring)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    base = CIFAR10 if layout.name == "cifar10" else CIFAR100

    class Checked(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            self.base_folder = layout.folder.name
            self.train_list = [[name, None] for name in layout.batches] if layout.split == "train" else []
            self.test_list = [[name, None] for name in layout.batches] if layout.split == "test" else []
            self.meta = {"filename": _meta(layout.name), "key": layout.names_key, "md5": None}
            super().__init__(str(layout.folder.parent), train=layout.split == "train", download=False)

        def _check_integrity(self) -> bool:
            self.checked = check_layout(layout)
            return True

    return Checked()


@dataclass(frozen=True)
class CifarArrays:
    """A split in memory: images N×32×32×3 uint8 (torchvision's layout), labels N int64, class names."""

    folder: Path
    images: Any
    labels: Any
    classes: list[str]

    @property
    def files(self) -> list[tuple[str, int]]:
        """(row, label) pairs: what ``ganforge prepare`` splits into shards, as it does a folder's files."""
        return [(str(row), int(label)) for row, label in enumerate(self.labels)]

    @property
    def fingerprint(self) -> str:
        """Changes when any pixel, label or class name does."""
        digest = hashlib.sha256("\n".join(self.classes).encode())
        digest.update(self.images.tobytes())
        digest.update(self.labels.tobytes())
        return digest.hexdigest()

    @property
    def root(self) -> Path:
        return self.folder


def read_cifar(root: str | None, *, name: str, split: str = "train", label: str = "fine") -> CifarArrays:
    """A split read with torchvision's class (after ``check_layout``); coarse labels come from the check."""
    import numpy as np

    layout = locate(root, name=name, split=split, label=label)
    dataset = _reader(layout)
    classes, labels = dataset.checked
    targets = np.concatenate(labels) if layout.label == "coarse" else np.asarray(dataset.targets, dtype=np.int64)
    return CifarArrays(folder=layout.folder, images=np.ascontiguousarray(dataset.data), labels=targets,
                       classes=list(dataset.classes))


def cifar_pixels(rows: Any, *, resolution: int, channels: int) -> Any:
    """N×32×32×3 uint8 rows as N×C×R×R uint8: as stored at 32 and RGB, else through PIL as ``imagefolder``
    reads a file (convert to the channel mode, then ``resize_and_crop``)."""
    import numpy as np

    if resolution == NATIVE and channels == 3:
        return np.ascontiguousarray(rows.transpose(0, 3, 1, 2))
    from PIL import Image

    mode = colour_mode(channels)
    out = np.empty((len(rows), channels, resolution, resolution), dtype=np.uint8)
    for k, row in enumerate(rows):
        pixels = np.asarray(resize_and_crop(Image.fromarray(row).convert(mode), resolution), dtype=np.uint8)
        out[k] = (pixels[:, :, None] if pixels.ndim == 2 else pixels).transpose(2, 0, 1)
    return out


class CifarImages:
    """Items ``(image float32 C×H×W in [-1, 1], label int64)``, as ``prepared`` yields them.

    Flips draw one ``torch.rand(1)`` per item from the global RNG (``torch.rand(n)`` per batch, the same
    numbers), so a checkpoint's RNG state replays them and a resumed run equals an uninterrupted one.
    """

    def __init__(self, *, arrays: CifarArrays, resolution: int, channels: int, flip: bool) -> None:
        self.images, self.labels, self.classes = arrays.images, arrays.labels, arrays.classes
        self.resolution, self.channels, self.flip = resolution, channels, flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any]]:
        import numpy as np
        import torch

        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        images = cifar_pixels(self.images[rows], resolution=self.resolution, channels=self.channels)
        if self.flip:
            flips = (torch.rand(len(images)) < 0.5).numpy()
            images[flips] = images[flips, :, :, ::-1]
        pixels = torch.from_numpy(images)
        labels = torch.from_numpy(self.labels[rows]).unbind(0)
        return [(pixels[k].float().div_(127.5).sub_(1.0), label) for k, label in enumerate(labels)]


def _build(name: str, *, root: str | None, split: str, label: str, resolution: int, channels: int,
           num_classes: int, flip: bool) -> CifarImages:
    arrays = read_cifar(root, name=name, split=split, label=label)
    count = len(arrays.classes)
    if num_classes and num_classes != count:
        which = f" ({label} labels)" if name == "cifar100" else ""
        raise GanforgeError(f"data.root {root!r}: {name}{which} has {count} classes but data.num_classes is "
                            f"{num_classes}: set data.num_classes: {count} (or 0 for an unconditional model)")
    if not num_classes:  # e.g. --set "data={type: cifar10, root: ...}" dropped a conditional blueprint's num_classes
        print(f"warning: {name} holds {count} classes but data.num_classes is 0: the labels are ignored and the "
              f"model is unconditional (set data.num_classes: {count} for a class-conditional one)", file=sys.stderr)
    return CifarImages(arrays=arrays, resolution=resolution, channels=channels, flip=flip)


@register("dataset", "cifar10")
def cifar10(*, root: str | None = None, split: Literal["train", "test"] = "train",
            resolution: Annotated[int, Field(ge=4)] = NATIVE, channels: Annotated[int, Field(ge=1, le=4)] = 3,
            num_classes: Annotated[int, Field(ge=0)] = 0, flip: bool = True) -> CifarImages:
    """CIFAR-10's ``cifar-10-batches-py`` as torchvision downloads it, in memory (images in [-1, 1]).

    ``root`` holds that folder (torchvision's root) or is it. ``resolution`` other than 32 resizes as
    ``imagefolder`` does. ``num_classes``: 10, or 0 for an unconditional model. The folder is trusted
    input (pickles): see ``ganforge.components.data.cifar``.
    """
    return _build("cifar10", root=root, split=split, label="", resolution=resolution, channels=channels,
                  num_classes=num_classes, flip=flip)


@register("dataset", "cifar100")
def cifar100(*, root: str | None = None, split: Literal["train", "test"] = "train",
             label: Literal["fine", "coarse"] = "fine", resolution: Annotated[int, Field(ge=4)] = NATIVE,
             channels: Annotated[int, Field(ge=1, le=4)] = 3, num_classes: Annotated[int, Field(ge=0)] = 0,
             flip: bool = True) -> CifarImages:
    """CIFAR-100's ``cifar-100-python`` as torchvision downloads it, in memory (images in [-1, 1]).

    As ``cifar10``; ``label: fine`` (100 classes) or ``coarse`` (the 20 superclasses).
    """
    return _build("cifar100", root=root, split=split, label=label, resolution=resolution, channels=channels,
                  num_classes=num_classes, flip=flip)


__all__ = ["CifarArrays", "CifarImages", "Layout", "check_layout", "cifar10", "cifar100", "cifar_pixels", "locate",
           "read_batch", "read_cifar"]
