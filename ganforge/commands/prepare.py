"""``ganforge prepare``: decode, resize and crop a class-per-folder image set (or a CIFAR folder) once into uint8
shards."""

from __future__ import annotations

from ..errors import GanforgeError


def prepare_folder(data_root: str, *, out: str, resolution: int, channels: int, workers: int | None,
                   shard_size: int | None, source: str = "imagefolder", split: str = "train",
                   label: str = "fine") -> list[str]:
    """Prepare (or resume preparing) ``data_root`` into ``out``; returns the summary lines to print.

    ``source`` is what ``data_root`` is: ``imagefolder``, or ``cifar10`` / ``cifar100`` (``split``, ``label``).
    """
    from ..components.data.prepare import prepare, summary

    if source == "imagefolder" and (split != "train" or label != "fine"):
        raise GanforgeError("--split and --label apply to --source cifar10 / cifar100 only")
    if source == "cifar10" and label != "fine":
        raise GanforgeError("--label applies to --source cifar100 only (CIFAR-10 has one set of labels)")
    manifest = prepare(data_root, out=out, resolution=resolution, channels=channels, workers=workers,
                       shard_size=shard_size, source=source, split=split, label=label)
    return list(summary(manifest, out))
