"""Combination coverage: how many of the data's (colour, shape) combinations the generator draws.

A consistency score alone rewards a generator that draws one combination perfectly; combination
coverage catches that mode collapse, again with the analytic ``long_range`` detector instead of
Inception. Called ``coverage`` in ganforge 0.1.0; that name is kept as a deprecated alias (one
warning), because in the GAN literature "coverage" is Naeem et al.'s metric (``density_coverage``).
"""

from __future__ import annotations

import torch

from ganforge.registry import register

from .consistency import LongRangeMetric, consistent_rows

__all__ = ["CombinationCoverage", "covered_fraction"]


def covered_fraction(codes: torch.Tensor, *, combinations: int | None = None) -> float:
    """Fraction of combinations drawn by at least one image whose parts all agree.

    ``codes`` are (N, parts) combination codes. The denominator is ``combinations`` (all the data
    can draw), or, when unknown, the number of distinct codes seen in any part.
    """
    shown = torch.unique(codes[consistent_rows(codes), 0])
    total = combinations if combinations is not None else max(1, torch.unique(codes).numel())
    return float(shown.numel()) / total


@register("metric", "combination_coverage", aliases=("coverage",))
class CombinationCoverage(LongRangeMetric):
    """Fraction of the long_range data's colour × shape combinations drawn consistently by some image.

    An image counts for a combination only when all its parts show it. ``bind(data=...)`` returns
    a copy holding the analytic detector for the run's ``long_range`` settings, whose colours ×
    shapes is the denominator; 1.0 on enough real data (every combination is equally likely).
    Output key ``combination_coverage``, under either name.
    """

    name = "combination_coverage"

    def compute(self, *, real: torch.Tensor | None, fake: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
        combinations = self.detector.combinations if self.detector is not None else None
        return {"combination_coverage": covered_fraction(fake, combinations=combinations)}
