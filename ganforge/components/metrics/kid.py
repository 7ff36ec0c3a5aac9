"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with a cubic polynomial kernel."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from ganforge.errors import GanforgeError
from ganforge.registry import register

__all__ = ["KID", "mmd2_unbiased", "polynomial_kernel"]


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (xᵀy / d + 1)³ for all pairs of rows, d the feature dimension."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD² estimate between equally sized samples x, y (m ≥ 2 rows each), float64.

    (Σ_{i≠j} k(xi, xj) + Σ_{i≠j} k(yi, yj)) / (m(m−1)) − 2 Σ_{i,j} k(xi, yj) / m²; it can be
    negative when the two distributions are the same.
    """
    x, y = x.to(torch.float64), y.to(torch.float64)
    m = x.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum()) + (k_yy.sum() - k_yy.diagonal().sum())
    return float(within / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


@register("metric", "kid")
class KID:
    """Kernel Inception Distance: unbiased MMD² (cubic polynomial kernel), mean ± std over random subsets.

    Each of ``subsets`` draws ``subset_size`` real and generated features without replacement
    (clipped to the smaller set), with a generator seeded by ``seed``; the std is over subsets
    (population std, as torch-fidelity). Unbiased: about 0, possibly negative, for equal
    distributions. When both sets hold at most ``subset_size`` images every subset is the whole
    set: one subset is computed, ``kid_std`` is 0, and ``notes`` says so (shown next to it).
    """

    name = "kid"
    needs_real = True
    needs_logits = False

    def __init__(self, *, subsets: Annotated[int, Field(ge=1)] = 100,
                 subset_size: Annotated[int, Field(ge=2)] = 1000, seed: int = 0) -> None:
        self.subsets = subsets
        self.subset_size = subset_size
        self.seed = seed
        self.notes: dict[str, str] = {}  # set by compute: why a value looks the way it does

    def compute(self, *, real: torch.Tensor | None, fake: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
        if real is None:
            raise GanforgeError("kid needs reference features, not only their mean and covariance")
        real, fake = real.to(torch.float64), fake.to(torch.float64)
        m = min(self.subset_size, real.shape[0], fake.shape[0])
        if m < 2:
            raise GanforgeError(f"kid needs at least 2 real and 2 generated images; got {real.shape[0]} and "
                                f"{fake.shape[0]}")
        self.notes = {}
        if m == real.shape[0] and m == fake.shape[0]:  # every subset would be both whole sets: no spread
            self.notes["kid_std"] = (f"one subset of {m} images; use --n ≥ 2×subset size "
                                     f"({2 * self.subset_size}) for a spread")
            return {"kid": mmd2_unbiased(real, fake), "kid_std": 0.0}
        gen = torch.Generator().manual_seed(self.seed)
        values = torch.empty(self.subsets, dtype=torch.float64)
        for i in range(self.subsets):
            x = real[torch.randperm(real.shape[0], generator=gen)[:m]]
            y = fake[torch.randperm(fake.shape[0], generator=gen)[:m]]
            values[i] = mmd2_unbiased(x, y)
        return {"kid": float(values.mean()), "kid_std": float(values.std(unbiased=False))}

    def __repr__(self) -> str:
        return f"KID(subsets={self.subsets}, subset_size={self.subset_size}, seed={self.seed})"
