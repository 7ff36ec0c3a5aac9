"""``ganforge prepare``: decode, resize and crop a class-per-folder image set once into uint8 shards."""

from __future__ import annotations


def prepare_folder(data_root: str, *, out: str, resolution: int, channels: int, workers: int | None,
                   shard_size: int | None) -> list[str]:
    """Prepare (or resume preparing) ``data_root`` into ``out``; returns the summary lines to print."""
    from ..components.data.prepare import prepare, summary

    manifest = prepare(data_root, out=out, resolution=resolution, channels=channels, workers=workers,
                       shard_size=shard_size)
    return list(summary(manifest, out))
