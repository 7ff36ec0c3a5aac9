"""Running a feature extractor over batches of images, with a progress line on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable

import torch

from ganforge.errors import GanforgeError

__all__ = ["extract_features"]


def extract_features(batches: Iterable[Any], extractor: Callable[..., Any], *, total: int, progress: bool = True,
                     label: str = "features") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (float64, (total, D)) and logits (or None) of the first ``total`` images of ``batches``.

    ``batches`` yields image tensors in [-1, 1] (B, C, H, W), or tuples whose first element is
    one; the last batch is cut to reach exactly ``total``. ``extractor`` is an
    ``InceptionFeatures`` (its ``forward_with_logits`` is used when it has logits) or any
    callable returning (B, D) features. Fewer than ``total`` images is an error.
    """
    if total < 1:
        raise GanforgeError(f"{label}: need at least one image, asked for {total}")
    with_logits = bool(getattr(extractor, "has_logits", False)) and hasattr(extractor, "forward_with_logits")
    feats: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    done = 0
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            batch = batch[: total - done]
            if batch.shape[0] == 0:
                break
            if with_logits:
                f, lg = extractor.forward_with_logits(batch)
                if lg is not None:
                    logits.append(lg.detach().to("cpu", torch.float64))
            else:
                f = extractor(batch)
            feats.append(f.detach().to("cpu", torch.float64).reshape(f.shape[0], -1))
            done += batch.shape[0]
            if progress:
                rate = done / max(time.perf_counter() - start, 1e-9)
                sys.stderr.write(f"\r{label}: {done}/{total} images ({rate:.1f} images/s)")
                sys.stderr.flush()
            if done >= total:
                break
    if progress:
        sys.stderr.write("\n")
        sys.stderr.flush()
    if done < total:
        raise GanforgeError(f"{label}: only {done} images available, {total} needed")
    features = torch.cat(feats)
    all_logits = torch.cat(logits) if with_logits and len(logits) == len(feats) else None
    return features, all_logits
