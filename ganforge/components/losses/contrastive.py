"""ContraGAN's conditional contrastive (2C) loss (``loss`` kind), added to an adversarial loss.

The 2C loss pulls an image's embedding towards its class proxy and towards the embeddings of the
other images of its class in the batch, against all other images of the batch. It reads D's
``embedding`` and ``proxy`` extras (the ``contra_output`` head) and the batch's labels.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Annotated, Literal

import pydantic
import torch
import torch.nn.functional as F

from ganforge.components.losses.adversarial import Hinge, LeastSquares, NonSaturating, Wasserstein
from ganforge.records import DiscriminatorOutput, LabelPair
from ganforge.registry import register

__all__ = ["ConditionalContrastive", "conditional_contrastive"]

NonNegative = Annotated[float, pydantic.Field(ge=0)]
Positive = Annotated[float, pydantic.Field(gt=0)]
Adversarial = Literal["hinge", "non_saturating", "wasserstein", "least_squares"]
_ADVERSARIAL = MappingProxyType({"hinge": Hinge, "non_saturating": NonSaturating, "wasserstein": Wasserstein,
                                 "least_squares": LeastSquares})


def conditional_contrastive(embedding: torch.Tensor, proxy: torch.Tensor, labels: torch.Tensor, *,
                            temperature: float) -> torch.Tensor:
    """The 2C loss of a batch: embeddings (B, D), their class proxies (B, D), labels (B,).

    With s_ij = cos(e_i, e_j) / t and s_i = cos(e_i, p_i) / t, image i contributes
    −log[(exp s_i + Σ_{j≠i, y_j = y_i} exp s_ij) / (exp s_i + Σ_{j≠i} exp s_ij)], averaged over
    the batch: PyTorch-StudioGAN ``src/utils/losses.py:83-98`` (``ConditionalContrastiveLoss``;
    the diagonal removed at :71-77 and :90-91, same-class mask at :59-66 and :91). Computed with
    log-sum-exp rather than exp/ratio (the same value, no overflow at small temperatures).
    """
    e = F.normalize(embedding.float(), dim=1)
    p = F.normalize(proxy.float(), dim=1)
    n = e.shape[0]
    others = ~torch.eye(n, dtype=torch.bool, device=e.device)  # j != i
    same = (labels[:, None] == labels[None, :]) & others  # j != i, y_j = y_i
    pairwise = (e @ e.T) / temperature  # (B, B)
    to_proxy = ((e * p).sum(dim=1) / temperature)[:, None]  # (B, 1)
    negative_inf = torch.finfo(pairwise.dtype).min
    numerator = torch.logsumexp(torch.cat([to_proxy, pairwise.masked_fill(~same, negative_inf)], dim=1), dim=1)
    denominator = torch.logsumexp(torch.cat([to_proxy, pairwise.masked_fill(~others, negative_inf)], dim=1), dim=1)
    return (denominator - numerator).mean()


def _labels(labels: LabelPair | None, which: str) -> torch.Tensor:
    value = None if labels is None else getattr(labels, which)
    if value is None:
        raise ValueError(f"the contra loss pulls images towards their class and needs class labels, but the {which} "
                         "batch has none (the data is unconditional: use a labelled dataset, or another loss)")
    return value


@register("loss", "contra")
class ConditionalContrastive:
    """ContraGAN (Kang & Park 2020): an adversarial loss plus ``contrastive_weight`` · the 2C loss.

    D: adversarial D loss + λ · 2C(embeddings and proxies of the real images, their labels); G:
    adversarial G loss + λ · 2C(those of its images, the labels it was given): StudioGAN
    ``src/worker.py:304-309`` (D, real images only when there is no ADC/TAC head) and
    ``:572-577`` (G), with λ = ``LOSS.cond_lambda`` (ContraGAN.yaml:25, 1.0) and the temperature
    ``LOSS.temperature`` (ContraGAN.yaml:26, 1.0; src/worker.py:143-147). StudioGAN's current 2C
    loss has no margin (src/utils/losses.py:49-98), so neither does this one. Under DDP StudioGAN
    gathers every rank's embeddings into one batch (losses.py:84-87); here each process's loss
    covers its own images. Needs a head giving ``embedding`` and ``proxy`` (``contra_output``).
    """

    needs_outputs = ("embedding", "proxy")

    def __init__(self, *, adversarial: Adversarial = "hinge", contrastive_weight: NonNegative = 1.0,
                 temperature: Positive = 1.0) -> None:
        self.adversarial = adversarial
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature
        self._loss = _ADVERSARIAL[adversarial]()

    def contrastive(self, output: DiscriminatorOutput, labels: torch.Tensor) -> torch.Tensor:
        """The 2C term of one batch of D outputs."""
        return conditional_contrastive(output.embedding, output.proxy, labels, temperature=self.temperature)

    def discriminator_loss(self, *, real: DiscriminatorOutput, fake: DiscriminatorOutput,
                           labels: LabelPair) -> torch.Tensor:
        loss = self._loss.discriminator_objective(real.logit, fake.logit)
        return loss + self.contrastive_weight * self.contrastive(real, _labels(labels, "real"))

    def generator_loss(self, *, fake: DiscriminatorOutput, real: DiscriminatorOutput | None = None,
                       labels: LabelPair) -> torch.Tensor:
        loss = self._loss.generator_objective(fake.logit)
        return loss + self.contrastive_weight * self.contrastive(fake, _labels(labels, "fake"))

    def __repr__(self) -> str:
        return (f"ConditionalContrastive(adversarial={self.adversarial!r}, "
                f"contrastive_weight={self.contrastive_weight!r}, temperature={self.temperature!r})")
