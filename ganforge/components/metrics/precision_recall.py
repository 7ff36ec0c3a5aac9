"""Improved precision and recall (Kynkäänniemi et al. 2019) from k-nearest-neighbour manifolds."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from ganforge.errors import GanforgeError
from ganforge.registry import register

__all__ = ["PrecisionRecall", "knn_radii", "inside_manifold"]


def knn_radii(features: torch.Tensor, k: int, *, chunk_size: int = 1000) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row (self excluded), computed in row chunks."""
    x = features.to(torch.float64)
    n = x.shape[0]
    if n <= k:
        raise GanforgeError(f"precision/recall with k={k} needs more than {k} samples per set; got {n}")
    out = torch.empty(n, dtype=torch.float64)
    for start in range(0, n, chunk_size):
        d = torch.cdist(x[start:start + chunk_size], x)
        # the k+1 smallest include the point itself (distance 0), as in the reference code
        out[start:start + chunk_size] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def inside_manifold(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, *,
                    chunk_size: int = 1000) -> torch.Tensor:
    """For each query: is it within radii[j] of some support point j? (bool, chunked over queries)."""
    q, s = queries.to(torch.float64), support.to(torch.float64)
    out = torch.empty(q.shape[0], dtype=torch.bool)
    for start in range(0, q.shape[0], chunk_size):
        d = torch.cdist(q[start:start + chunk_size], s)
        out[start:start + chunk_size] = (d <= radii[None, :]).any(dim=1)
    return out


@register("metric", "pr")
class PrecisionRecall:
    """Improved precision and recall: generated inside the real manifold, real inside the generated one.

    Each manifold is the union of balls around its samples with radius = distance to the k-th
    nearest neighbour (self excluded). Distances are computed ``chunk_size`` rows at a time, so
    memory stays at chunk_size × N (10k × 10k works).
    """

    name = "pr"
    needs_real = True
    needs_logits = False

    def __init__(self, *, k: Annotated[int, Field(ge=1)] = 3,
                 chunk_size: Annotated[int, Field(ge=1)] = 1000) -> None:
        self.k = k
        self.chunk_size = chunk_size

    def compute(self, *, real: torch.Tensor | None, fake: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
        if real is None:
            raise GanforgeError("pr needs reference features, not only their mean and covariance")
        real_radii = knn_radii(real, self.k, chunk_size=self.chunk_size)
        fake_radii = knn_radii(fake, self.k, chunk_size=self.chunk_size)
        precision = inside_manifold(fake, real, real_radii, chunk_size=self.chunk_size).double().mean()
        recall = inside_manifold(real, fake, fake_radii, chunk_size=self.chunk_size).double().mean()
        return {"precision": float(precision), "recall": float(recall)}

    def __repr__(self) -> str:
        return f"PrecisionRecall(k={self.k}, chunk_size={self.chunk_size})"
