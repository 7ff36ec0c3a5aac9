"""``ganforge prepare``: decode, resize and crop an image folder once, into memory-mappable uint8 shards.

Decoding JPEGs at train time cannot feed a GPU at 1,500+ images/s; like BigGAN-PyTorch's
``make_hdf5.py`` this does that work once, in parallel, so the ``prepared`` dataset only slices arrays.

Output folder::

    plan.json                 settings and a fingerprint of the file list (written first)
    images-00000.npy          N×C×H×W uint8, one per shard (np.load(mmap_mode="r"))
    labels-00000.npy          N int64 class indices
    shard-00000.json          written after both arrays: marks the shard complete
    manifest.json             written last: classes, shards (with each array's size and SHA-256), skipped files

Every file is written to a temporary name and renamed, so an interrupted run (or a full disk) leaves
only complete shards; a rerun with the same arguments skips them. The order (sorted classes, sorted files) is
fixed, so reruns write identical bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

from ...errors import GanforgeError
from .files import open_regular, os_reason, read_json
from .images import (  # noqa: F401  (the pipeline's names, importable from here as before)
    IMAGE_EXTENSIONS, Listing, UnreadableImage, colour_mode, image_files, list_images, load_image, resize_and_crop,
)
from .shardfile import Expected, HashingWriter, map_array, sha256_of

FORMAT = "ganforge-prepared"
VERSION = 1
MANIFEST = "manifest.json"
PLAN = "plan.json"
CHUNK = 64  # files per worker task: small enough for a smooth progress line, large enough to amortise IPC
SHARD_BYTES = 256 * 2**20
LISTING_KEYS = ("classes", "source_files", "listing_sha256")  # plan keys that describe the source files


def default_shard_size(resolution: int, channels: int) -> int:
    """Images per shard: about 256 MiB, the most the writer holds in memory at once."""
    return max(1, SHARD_BYTES // (channels * resolution * resolution))


@dataclass(frozen=True)
class _Chunk:
    root: str
    files: list[tuple[str, int]]
    resolution: int
    channels: int
    pixels: Any = None  # the rows of an in-memory source (CIFAR, N×32×32×3 uint8) instead of files under root


def _decode_chunk(chunk: _Chunk) -> tuple[Any, list[int], list[dict[str, str]]]:
    """Worker task: decode a few files; unreadable ones are reported, not raised."""
    import numpy as np

    if chunk.pixels is not None:
        from .cifar import cifar_pixels

        return (cifar_pixels(chunk.pixels, resolution=chunk.resolution, channels=chunk.channels),
                [label for _, label in chunk.files], [])
    mode = colour_mode(chunk.channels)
    images = np.empty((len(chunk.files), chunk.channels, chunk.resolution, chunk.resolution), dtype=np.uint8)
    labels: list[int] = []
    skipped: list[dict[str, str]] = []
    for relative, label in chunk.files:
        try:
            images[len(labels)] = load_image(os.path.join(chunk.root, relative), resolution=chunk.resolution,
                                             mode=mode)
        except Exception as err:  # noqa: BLE001 - any decoder failure means "skip this file", and it is listed
            if isinstance(err, UnreadableImage) and err.cause is not None:
                err = err.cause  # PIL's own refusal, listed under its own name
            message = " ".join(f"{type(err).__name__}: {err}".split())
            skipped.append({"path": relative, "error": message.replace(chunk.root + os.sep, "")[:300]})
            continue
        labels.append(label)
    return images[: len(labels)], labels, skipped


# --- the whole folder ------------------------------------------------------------------------------
def prepare(data_root: str | Path, *, out: str | Path, resolution: int, channels: int = 3,
            workers: int | None = None, shard_size: int | None = None, progress: bool = True,
            source: str = "imagefolder", split: str = "train", label: str = "fine") -> dict[str, Any]:
    """Write ``out`` (see the module docstring) from the image folder ``data_root``; returns the manifest.

    ``source`` ``cifar10`` / ``cifar100`` reads a CIFAR folder instead (``data_root`` as the datasets of
    those names take it; ``split``, and ``label`` for cifar100), recorded in the plan.
    """
    target = Path(out).expanduser().resolve()
    if source == "imagefolder":
        root, listing = _image_listing(data_root, target)
        pixels = None
    else:
        from .cifar import read_cifar

        listing = read_cifar(str(data_root), name=source, split=split, label=label)
        root, pixels = listing.folder.resolve(), listing.images
    shard_size = shard_size or _started_shard_size(target) or default_shard_size(resolution, channels)
    plan = {"format": FORMAT, "version": VERSION, "resolution": resolution, "channels": channels,
            "shard_size": shard_size, "classes": listing.classes, "source_files": len(listing.files),
            "listing_sha256": listing.fingerprint}
    if source != "imagefolder":  # only then, so folders prepared before this key existed still resume
        plan["source_type"] = f"{source} {split}" + (f" {label}" if source == "cifar100" else "")
    try:
        plan_id = _start(target, plan)
    except OSError as err:  # creating the folder
        raise GanforgeError(f"cannot write {target}: {os_reason(err)}") from None
    shards = [listing.files[start: start + shard_size] for start in range(0, len(listing.files), shard_size)]
    pending = [i for i in range(len(shards))
               if not _complete(target, i, plan_id, shape=(channels, resolution, resolution))]
    bar = _Progress(len(listing.files), enabled=progress,
                    done=len(listing.files) - sum(len(shards[i]) for i in pending))
    chunks = [(i, _Chunk(str(root), shards[i][start: start + CHUNK], resolution, channels,
                         None if pixels is None else pixels[i * shard_size + start:][: len(shards[i][start: start + CHUNK])]))
              for i in pending for start in range(0, len(shards[i]), CHUNK)]
    try:
        _write_shards(target, chunks, plan_id=plan_id, workers=workers or os.cpu_count() or 1,
                      shape=(shard_size, channels, resolution, resolution), bar=bar)
    except KeyboardInterrupt:
        bar.close()
        error = GanforgeError(f"interrupted: complete shards are kept in {target}; rerun the same command to "
                              "continue")
        error.exit_code = 130  # type: ignore[attr-defined]  # the shell's code for Ctrl-C
        raise error from None
    bar.close()
    manifest = _manifest(target, plan, len(shards), source=root)
    _write_json(target / MANIFEST, manifest)
    return manifest


def _image_listing(data_root: str | Path, target: Path) -> tuple[Path, Listing]:
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise GanforgeError(f"DATA_ROOT {str(data_root)!r} is not a directory: pass the image folder "
                            "(one sub-folder per class)")
    root = root.resolve()
    for name, folder, meta in (("cifar10", "cifar-10-batches-py", "batches.meta"),
                               ("cifar100", "cifar-100-python", "meta")):
        if (root / folder).is_dir() or (root / meta).is_file():
            raise GanforgeError(f"DATA_ROOT {str(data_root)!r} is a {name} folder as torchvision downloads it, "
                                f"not an image folder: pass --source {name}")
    _check_not_inside(target, root)
    listing = list_images(root, exclude=target)
    if not listing.files:
        raise GanforgeError(f"DATA_ROOT {str(data_root)!r} has no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return root, listing


def _check_not_inside(target: Path, root: Path) -> None:
    if target == root:
        raise GanforgeError("--out is DATA_ROOT itself: choose another folder")
    if target.is_relative_to(root):
        first = target.relative_to(root).parts[0]
        if not first.startswith("."):
            raise GanforgeError(f"--out {str(target)!r} is inside DATA_ROOT and would be read as a class folder: "
                                f"choose a folder outside it (or a hidden one such as {root / '.prepared'})")


def _started_shard_size(target: Path) -> int | None:
    """A resumed folder keeps the shard size it was started with unless --shard-size says otherwise."""
    try:
        return int(read_json(target / PLAN)["shard_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _start(target: Path, plan: dict[str, Any]) -> str:
    """Record the plan, or check that a folder being resumed was started with the same one."""
    path = target / PLAN
    if path.is_file():
        try:
            before = read_json(path)
            if not isinstance(before, dict):
                raise ValueError(f"a {type(before).__name__}, not an object")
        except (OSError, ValueError) as err:
            raise GanforgeError(f"{path}: unreadable ({err}); delete the folder and run again") from None
        keys = [*plan, *(k for k in before if k not in plan)]
        different = [f"{k} {before.get(k)!r} there, {plan.get(k)!r} now" for k in keys
                     if k not in LISTING_KEYS and before.get(k) != plan.get(k)]
        if any(before.get(k) != plan[k] for k in LISTING_KEYS):
            different.append(f"the image files under DATA_ROOT changed: {before.get('source_files')} files in "
                             f"{len(before.get('classes', []))} classes then, {plan['source_files']} in "
                             f"{len(plan['classes'])} now")
        if different:
            raise GanforgeError(f"{target} was prepared with other settings ({'; '.join(different)}): "
                                "use another --out or delete that folder")
    elif target.is_dir() and any(target.iterdir()):
        raise GanforgeError(f"--out {str(target)!r} exists and is not a ganforge prepare folder (no {PLAN}): "
                            "choose an empty or new folder")
    else:
        target.mkdir(parents=True, exist_ok=True)
        _write_json(path, plan)
    for stale in target.glob(".*.tmp"):  # left by an interrupted run
        stale.unlink()
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def _names(index: int) -> tuple[str, str, str]:
    return f"images-{index:05d}.npy", f"labels-{index:05d}.npy", f"shard-{index:05d}.json"


def _complete(target: Path, index: int, plan_id: str, *, shape: tuple[int, int, int]) -> bool:
    """A shard counts only when its record exists, belongs to this plan and both arrays match it
    (headers and sizes; regular files only, so a FIFO in their place is rewritten, never read)."""
    images, labels, record = (target / name for name in _names(index))
    try:
        info = read_json(record)
        count = info.get("count") if isinstance(info, dict) and info.get("plan") == plan_id else None
        if not isinstance(count, int):
            return False
        for key, path, dtype, array_shape in (("images", images, "uint8", (count, *shape)),
                                              ("labels", labels, "int64", (count,))):
            size = info.get(f"{key}_bytes")
            map_array(Expected(path=path, dtype=dtype, shape=array_shape, size=size if isinstance(size, int) else None),
                      verify=False)
        return True
    except (OSError, ValueError, GanforgeError):
        return False


def _results(chunks: list[tuple[int, _Chunk]], workers: int) -> Iterator[tuple[int, Any]]:
    """Decoded chunks in order; at most a few per worker in flight, so memory stays bounded."""
    if workers == 1:
        yield from ((shard, _decode_chunk(chunk)) for shard, chunk in chunks)
        return
    from concurrent.futures import ProcessPoolExecutor

    pending = iter(chunks)
    with ProcessPoolExecutor(max_workers=workers, initializer=_ignore_interrupts) as pool:
        window = deque((shard, pool.submit(_decode_chunk, chunk)) for shard, chunk in islice(pending, 4 * workers))
        try:
            while window:
                shard, future = window.popleft()
                result = future.result()
                for next_shard, chunk in islice(pending, 1):
                    window.append((next_shard, pool.submit(_decode_chunk, chunk)))
                yield shard, result
        finally:
            for _, future in window:
                future.cancel()


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent, which stops cleanly after the chunks in flight."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write_shards(target: Path, chunks: list[tuple[int, _Chunk]], *, plan_id: str, workers: int,
                  shape: tuple[int, int, int, int], bar: "_Progress") -> None:
    import numpy as np

    buffer = np.empty(shape, dtype=np.uint8)
    current, count, labels, skipped = None, 0, [], []
    for shard, (images, chunk_labels, chunk_skipped) in _results(chunks, workers):
        if shard != current:
            if current is not None:
                _write_shard(target, current, buffer[:count], labels, skipped, plan_id)
            current, count, labels, skipped = shard, 0, [], []
        buffer[count: count + len(images)] = images
        count += len(images)
        labels += chunk_labels
        skipped += chunk_skipped
        bar.advance(len(images) + len(chunk_skipped), skipped=len(chunk_skipped))
    if current is not None:
        _write_shard(target, current, buffer[:count], labels, skipped, plan_id)


def _write_shard(target: Path, index: int, images: Any, labels: list[int], skipped: list[dict[str, str]],
                 plan_id: str) -> None:
    import numpy as np

    image_name, label_name, record_name = _names(index)
    record: dict[str, Any] = {"plan": plan_id, "count": len(labels)}
    for key, name, array in (("images", image_name, images), ("labels", label_name, np.asarray(labels, dtype=np.int64))):
        with _atomic(target / name) as handle:
            writer = HashingWriter(handle)
            np.save(writer, array, allow_pickle=False)
        record.update({f"{key}_{field}": value for field, value in writer.record().items()})
    _write_json(target / record_name, {**record, "skipped": skipped})


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[BinaryIO]:
    """A file written under a temporary name in the same folder, fsynced, then renamed over ``path``.

    A failed write (a full disk, a read-only folder) leaves nothing under either name and raises one
    ``GanforgeError`` naming ``path``; shards finished before it stay complete.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as err:
        raise GanforgeError(f"cannot write {path}: {os_reason(err)}; complete shards are kept: make room "
                            "and rerun the same command to continue") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    with _atomic(path) as handle:
        handle.write((json.dumps(value, indent=1) + "\n").encode())


def _manifest(target: Path, plan: dict[str, Any], shards: int, *, source: Path) -> dict[str, Any]:
    entries, skipped = [], []
    for index in range(shards):
        image_name, label_name, record_name = _names(index)
        record = read_json(target / record_name)
        entry = {"images": image_name, "labels": label_name, "count": record["count"]}
        for key, name in (("images", image_name), ("labels", label_name)):
            if f"{key}_sha256" not in record:  # a shard written before checksums: hash the file as it is now
                with open_regular(target / name) as handle:
                    record[f"{key}_bytes"], record[f"{key}_sha256"] = os.fstat(handle.fileno()).st_size, sha256_of(handle)
            entry.update({f"{key}_bytes": record[f"{key}_bytes"], f"{key}_sha256": record[f"{key}_sha256"]})
        entries.append(entry)
        skipped += record["skipped"]
    return {"format": FORMAT, "version": VERSION, "resolution": plan["resolution"], "channels": plan["channels"],
            "classes": plan["classes"], "images": sum(e["count"] for e in entries), "source": str(source),
            "source_files": plan["source_files"], "shards": entries, "skipped_count": len(skipped),
            "skipped": skipped}


class _Progress:
    """One self-overwriting line on stderr (a new line every 10% when stderr is not a terminal)."""

    def __init__(self, total: int, *, enabled: bool, done: int = 0) -> None:
        self.total, self.done, self.skipped, self.enabled = total, done, 0, enabled
        self.start_done, self.start = done, time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last_shown, self.last_decile, self.shown_done = 0.0, -1, done

    def advance(self, files: int, *, skipped: int = 0) -> None:
        self.done += files
        self.skipped += skipped
        now = time.monotonic()
        decile = 10 * self.done // max(self.total, 1)
        if self.enabled and ((self.tty and now - self.last_shown > 0.2) or (not self.tty and decile > self.last_decile)):
            self.last_shown, self.last_decile = now, decile
            self._show(now)

    def _show(self, now: float) -> None:
        self.shown_done = self.done
        rate = (self.done - self.start_done) / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        line = (f"prepare: {self.done}/{self.total} files ({100 * self.done / max(self.total, 1):.0f}%), "
                f"{rate:.0f} images/s, {self.skipped} skipped, eta {int(eta // 60)}:{int(eta % 60):02d}")
        sys.stderr.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.done > self.shown_done:
            self._show(time.monotonic())
        if self.enabled and self.tty and self.done > self.start_done:
            sys.stderr.write("\n")
            sys.stderr.flush()


def summary(manifest: dict[str, Any], out: Path | str) -> Iterable[str]:
    """Lines the CLI prints after a run."""
    yield (f"wrote {out}: {manifest['images']} images at {manifest['resolution']}×{manifest['resolution']}, "
           f"{len(manifest['classes'])} classes, {len(manifest['shards'])} shard(s), "
           f"{manifest['skipped_count']} unreadable file(s) skipped")
    for item in manifest["skipped"][:10]:
        yield f"  skipped {item['path']}: {item['error']}"
    if manifest["skipped_count"] > 10:
        yield f"  ... and {manifest['skipped_count'] - 10} more (listed in {Path(out) / MANIFEST})"
