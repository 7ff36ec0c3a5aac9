"""Features of the reference (real) images: computed once, cached as ``.npz``, or read from a user file.

Which images: ``min(n, len(dataset))`` of them. If ``n`` covers the whole dataset, all of it;
otherwise a subset drawn with a seeded generator (``subset_seed``, default 0: the same
images every time), taken in increasing index order. A random subset rather than the first
``n`` items, because class-folder datasets are sorted by class and their first ``n`` items
would cover only a few classes. An item that raises one of ``UNREADABLE`` (a corrupt, truncated,
empty or oversized file) is skipped, counted, and replaced by the next image of the same seeded
permutation outside the subset, so the count stays ``min(n, len(dataset))`` while readable images last.

Cache file: ``<cache_dir>/ref-<sha256[:24]>.npz``, the hash over the canonical JSON (sorted keys)
of the caller's ``key``, the number of images, the subset rule and the extractor's identity
(network, weights sha1, resize, input range; not the file's location). It holds ``features``
(float32, (N, D)), ``mu`` and ``sigma`` (float64, computed from the float32 features),
``labels`` (int64, (N,): each image's class, when every dataset item carried one; for intra-class
FID) and ``key`` (that JSON). A hit is checked against the key and returned without touching the
dataset. Features are returned as float64 of the float32-rounded values, so a first run and
a cached run give identical numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ganforge.sharding import Shard, all_agree, gather_rows
from ganforge.errors import GanforgeError

from .features import extract_features
from .fid import feature_stats

__all__ = ["cache_payload", "default_cache_dir", "load_reference_file", "reference_features"]

CACHE_VERSION = 1


def default_cache_dir(data_root: str | os.PathLike[str] | None) -> Path:
    """``<data_root>/.ganforge_stats`` if it can be created and written, else ``$XDG_CACHE_HOME/ganforge/stats``."""
    if data_root:
        root = Path(data_root).expanduser()
        if root.is_dir():
            candidate = root / ".ganforge_stats"
            if _writable_dir(candidate):
                return candidate
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    fallback = Path(base).expanduser() / "ganforge" / "stats"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
        return True
    except OSError:
        return False


def cache_payload(key: dict[str, Any], *, n: int, subset_seed: int, extractor: Any) -> str:
    """The canonical JSON that names (through its sha256) and validates a cache file."""
    identity = getattr(extractor, "identity", None) or getattr(extractor, "description", None) or repr(extractor)
    payload = {"version": CACHE_VERSION, "key": key, "n": n, "subset": f"seeded random, seed {subset_seed}",
               "extractor": identity}
    try:
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError) as err:
        raise GanforgeError(f"reference cache key is not JSON-serialisable: {err}") from None


def subset_indices(size: int, n: int, seed: int) -> list[int]:
    """All of 0..size−1 if n ≥ size, else n of them drawn with a generator seeded by ``seed``, sorted."""
    return _subset_and_spares(size, n, seed)[0]


def _subset_and_spares(size: int, n: int, seed: int) -> tuple[list[int], list[int]]:
    """``subset_indices`` and the other indices, in the seeded permutation's order (replacements)."""
    if n >= size:
        return list(range(size)), []
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(size, generator=gen).tolist()
    return sorted(order[:n]), order[n:]


def reference_features(dataset: Any, *, n: int, extractor: Any, cache_dir: Path | None, key: dict[str, Any],
                       batch_size: int = 50, progress: bool = True, subset_seed: int = 0,
                       report: dict[str, Any] | None = None, shard: Shard | None = None,
                       labels: bool = False) -> torch.Tensor:
    """Float64 features (N, D) of ``min(n, len(dataset))`` reference images, cached in ``cache_dir``.

    ``report``, when given, receives ``skipped`` (unreadable files skipped; 0 on a cache hit), ``cached``
    and ``labels``: the class of each returned row (int64, (N,)), or None when the items carry none.
    With ``labels`` a cache file written without them is not used (it is written again, with them).
    With a ``shard`` of several processes (all calling together) each reads every image, so the
    replacements of unreadable files agree, but runs Inception on its own batches only.
    """
    shard = Shard() if shard is None else shard
    if report is not None:
        report.update(skipped=0, cached=False)
    payload = cache_payload(key, n=n, subset_seed=subset_seed, extractor=extractor)
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256(payload.encode()).hexdigest()[:24]
        path = Path(cache_dir) / f"ref-{digest}.npz"
        cached = _read_cache(path, payload)
        cached_labels = _read_cached_labels(path) if cached is not None else None
        if labels and cached_labels is None:
            cached = None
        if all_agree(cached is not None, shard):  # every process uses the cache, or none does
            if report is not None:
                report.update(cached=True, labels=cached_labels)
            return cached
    size = len(dataset)
    if size == 0:
        raise GanforgeError("the reference dataset is empty")
    indices, spares = _subset_and_spares(size, n, subset_seed)
    skipped = [0]
    item_labels: list[int | None] = []
    parts: list[torch.Tensor] = []
    done, start = 0, time.perf_counter()
    own = shard.batch_range(len(indices), batch_size)
    for index, batch in enumerate(_batches(dataset, indices, spares, batch_size, skipped, item_labels)):
        done += batch.shape[0]
        if shard.world > 1 and index not in own:
            continue
        part, _ = extract_features([batch], extractor, total=batch.shape[0], progress=False, label="reference")
        parts.append(part)
        if progress and shard.rank == 0:
            rate = done / max(time.perf_counter() - start, 1e-9)
            sys.stderr.write(f"\rreference: {done}/{len(indices)} images ({rate:.1f} images/s)")
            sys.stderr.flush()
    if progress and shard.rank == 0:
        sys.stderr.write("\n")
        sys.stderr.flush()
    row_labels = None if None in item_labels else torch.tensor(item_labels, dtype=torch.int64)
    if report is not None:
        report.update(skipped=skipped[0], labels=row_labels)
    if not done:
        raise GanforgeError(f"none of the {size} reference images could be read ({skipped[0]} unreadable files)")
    features = gather_rows(torch.cat(parts) if parts else None, shard) if shard.world > 1 else torch.cat(parts)
    features32 = features.to(torch.float32)
    result = features32.to(torch.float64)
    if path is not None and shard.rank == 0:
        _write_cache(path, payload, features32, result, row_labels)
    return result


def _batches(dataset: Any, indices: list[int], spares: list[int], batch_size: int,
             skipped: list[int], labels: list[int | None]) -> Iterator[torch.Tensor]:
    """Images of ``indices`` in batches; an unreadable one is counted in ``skipped[0]`` and replaced by a spare.

    ``labels`` receives each image's class as it is taken (None for an item without an integer label).
    """
    from ganforge.components.data.imagefolder import UNREADABLE

    wanted, replacements = len(indices), iter(spares)
    candidates = iter(indices)
    from ganforge.contracts import capability

    counts_skipped = capability(dataset, "max_skipped", kind="dataset") is not None
    images: list[Any] = []
    taken = 0
    while taken < wanted:
        i = next(candidates, None)
        if i is None:
            i = next(replacements, None)
            if i is None:
                break
        try:
            item = dataset[i]
        except UNREADABLE:
            skipped[0] += 1
            continue
        labels.append(_label(item))
        if isinstance(item, (tuple, list)):
            if counts_skipped:  # (image, label, skipped): it replaced unreadable files itself
                skipped[0] += int(item[2])
            item = item[0]
        images.append(torch.as_tensor(item))
        taken += 1
        if len(images) == batch_size:
            yield torch.stack(images)
            images = []
    if images:
        yield torch.stack(images)


def _label(item: Any) -> int | None:
    """The class of a dataset item ``(image, label[, skipped])``: an integer scalar, else None."""
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        return None
    label = torch.as_tensor(item[1])
    if label.numel() != 1 or label.is_floating_point() or label.is_complex():
        return None
    return int(label)


def _read_cached_labels(path: Path) -> torch.Tensor | None:
    """The ``labels`` of a cache file ``_read_cache`` accepted, or None (an older file has none)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return torch.from_numpy(np.asarray(data["labels"], dtype=np.int64)) if "labels" in data.files else None
    except (OSError, ValueError, zipfile.BadZipFile):
        return None


def _read_cache(path: Path, payload: str) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = str(data["key"])
            features = data["features"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        sys.stderr.write(f"ignoring unreadable reference cache {path}: {err}\n")
        return None
    if stored != payload:
        sys.stderr.write(f"ignoring reference cache {path}: it was made for a different key\n")
        return None
    return torch.from_numpy(features.astype(np.float32)).to(torch.float64)


def _write_cache(path: Path, payload: str, features32: torch.Tensor, features64: torch.Tensor,
                 labels: torch.Tensor | None = None) -> None:
    mu, sigma = feature_stats(features64) if features64.shape[0] >= 2 else (features64.mean(0), None)
    arrays = {"features": features32.numpy(), "mu": mu.numpy(), "key": np.array(payload)}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    if sigma is not None:
        arrays["sigma"] = sigma.numpy()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ref-", suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared data root's cache should be readable by all
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as err:
        sys.stderr.write(f"could not write reference cache {path}: {err}\n")


def load_reference_file(path: str | os.PathLike[str]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """A user-provided reference ``.npz``: features (all metrics) or mean and covariance (FID only).

    With an array ``features`` (N, D): returns it as a float64 tensor (our own cache files
    qualify). Otherwise ``mu`` (D,) and ``sigma`` (D, D) (pytorch-fid's ``--save-stats`` format;
    ``mean``/``cov`` also accepted): returns ``(mu, sigma)`` float64, which only FID can use.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            names = set(data.files)
            if "features" in names:
                features = np.asarray(data["features"], dtype=np.float64)
                if features.ndim != 2:
                    raise GanforgeError(f"{path}: `features` must be (N, D); got shape {features.shape}")
                return torch.from_numpy(features)
            for mu_name, sigma_name in (("mu", "sigma"), ("mean", "cov")):
                if mu_name in names and sigma_name in names:
                    mu = np.asarray(data[mu_name], dtype=np.float64).reshape(-1)
                    sigma = np.asarray(data[sigma_name], dtype=np.float64)
                    if sigma.shape != (mu.size, mu.size):
                        raise GanforgeError(f"{path}: `{sigma_name}` has shape {sigma.shape}, expected "
                                            f"({mu.size}, {mu.size})")
                    return torch.from_numpy(mu), torch.from_numpy(sigma)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise GanforgeError(f"cannot read reference file {path}: {err}") from None
    raise GanforgeError(f"{path} has neither `features` nor `mu` and `sigma` (arrays: {', '.join(sorted(names))})")
