"""Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models").

Both use only the real samples' k-NN balls, which are more reliable than the generated ones:
precision counts a fake sample inside any ball once, density counts how many balls hold it (an
outlier real sample with a huge ball no longer makes every fake sample "precise"); coverage is
the share of real balls that hold some fake sample (recall from the real side, so a few far
fake outliers cannot inflate it).

Definitions as in the reference implementation, clovaai/prdc ``prdc/prdc.py`` (commit e320c1d):
radii = distance of each real sample to its k-th nearest other real sample (line 50: the
(k+1)-th smallest including itself); a fake sample is inside a ball when its distance is
strictly less than the radius (lines 86-94); density = Σ_j Σ_i 1[d(fake_j, real_i) < r_i] / (kM)
(line 86), coverage = mean_i 1[min_j d(fake_j, real_i) < r_i] (line 91). The README there
(lines 55-61) gives the same formulas and uses k = 5 (lines 93, 102).
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from ganforge.errors import GanforgeError
from ganforge.registry import register

from .precision_recall import knn_radii, within_radii

__all__ = ["DensityCoverage", "density_and_coverage"]


def density_and_coverage(real: torch.Tensor, fake: torch.Tensor, *, k: int = 5,
                         chunk_size: int = 1000) -> tuple[float, float]:
    """(density, coverage) of ``fake`` (M, D) against ``real`` (N, D), N > k.

    Distances as precision/recall's (``knn_radii``, ``within_radii``: float32 products on the features'
    device, ``chunk_size`` generated rows at a time, with every comparison they cannot settle redone
    in float64), so the counts equal those of float64 distances.
    """
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise GanforgeError(f"density_coverage needs (N, D) and (M, D) features; got {tuple(real.shape)} and "
                            f"{tuple(fake.shape)}")
    if real.shape[0] <= k:
        raise GanforgeError(f"density_coverage with k={k} needs more than {k} reference images; got {real.shape[0]}")
    if fake.shape[0] < 1:
        raise GanforgeError("density_coverage needs at least one generated image")
    radii = knn_radii(real, k, chunk_size=chunk_size)
    inside_count = 0
    covered = torch.zeros(real.shape[0], dtype=torch.bool, device=fake.device)
    for _, inside in within_radii(fake, real, radii, strict=True, chunk_size=chunk_size):  # (chunk, N)
        inside_count += int(inside.sum())
        covered |= inside.any(dim=0).to(covered.device)
    density = inside_count / (k * fake.shape[0])
    return density, float(covered.double().mean())


@register("metric", "density_coverage")
class DensityCoverage:
    """Density (fidelity, about 1 for matching distributions, unbounded) and coverage (diversity, in [0, 1]).

    k-NN balls around the real samples only (default k = 5, as the authors'); see the module
    docstring for the definitions and where they were read. Output keys ``density``, ``coverage``.
    """

    name = "density_coverage"
    needs_real = True
    needs_logits = False

    def __init__(self, *, k: Annotated[int, Field(ge=1)] = 5,
                 chunk_size: Annotated[int, Field(ge=1)] = 1000) -> None:
        self.k = k
        self.chunk_size = chunk_size

    def compute(self, *, real: torch.Tensor | None, fake: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
        if real is None:
            raise GanforgeError("density_coverage needs reference features, not only their mean and covariance")
        density, coverage = density_and_coverage(real, fake, k=self.k, chunk_size=self.chunk_size)
        return {"density": density, "coverage": coverage}

    def __repr__(self) -> str:
        return f"DensityCoverage(k={self.k}, chunk_size={self.chunk_size})"
