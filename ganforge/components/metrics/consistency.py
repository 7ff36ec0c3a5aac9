"""Long-range consistency: do an image's distant parts agree? Scored without Inception.

The ``long_range`` data draws every part of a real image with one (colour, shape); its analytic
detector reads each part back from pixels. A generator that models regions independently draws
parts that disagree, which FID-style pooled features barely notice.
"""

from __future__ import annotations

from typing import Any

import torch

from ganforge.errors import GanforgeError
from ganforge.registry import register

__all__ = ["Consistency", "LongRangeMetric", "consistent_rows"]


def consistent_rows(codes: torch.Tensor) -> torch.Tensor:
    """For (N, parts) part codes: does every part of the image carry the same code? (bool, N)."""
    if codes.ndim != 2 or codes.shape[1] < 1:
        raise GanforgeError(f"expected (N, parts) part codes; got shape {tuple(codes.shape)}")
    return (codes == codes[:, :1]).all(dim=1)


class LongRangeMetric:
    """What the long_range metrics share: no Inception, and a detector bound to the run's data settings."""

    needs_real = False
    needs_logits = False
    needs_inception_features = False

    def __init__(self) -> None:
        self.detector: Any = None

    def bind(self, *, data: Any, registry: Any = None) -> LongRangeMetric:
        """A copy holding the analytic detector for the run's blueprint ``data`` (an error unless long_range).

        ``registry``: the run's (default: the global one), which builds the data's detector.
        """
        from ganforge.components.data.long_range import detector_for

        bound = type(self)()
        bound.detector = detector_for(data, metric=self.name, registry=registry)
        return bound

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@register("metric", "consistency")
class Consistency(LongRangeMetric):
    """Fraction of generated images whose distant parts agree (long_range data; 1.0 on real data).

    ``bind(data=...)`` returns a copy holding the analytic detector for the run's ``long_range``
    settings; evaluation then passes the detected (N, parts) codes as ``fake``. Parts drawn
    independently agree by chance with probability (1 / (colours·shapes))^(parts − 1).
    """

    name = "consistency"

    def compute(self, *, real: torch.Tensor | None, fake: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
        return {"consistency": float(consistent_rows(fake).double().mean())}
