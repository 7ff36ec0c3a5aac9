"""Losses that read more than D's logit (``loss`` kind): AC-GAN's classifier, feature matching.

Each declares the extras of D's output it reads (``needs_outputs``), so assembly refuses a
discriminator head that does not give them. The adversarial part is one of the built-in losses,
chosen by name and built here directly; its objectives on the logits
(``discriminator_objective`` / ``generator_objective``) are the terms these losses add to.
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

__all__ = ["ACGAN", "FeatureMatching"]

NonNegative = Annotated[float, pydantic.Field(ge=0)]
Adversarial = Literal["hinge", "non_saturating", "wasserstein", "least_squares"]
_ADVERSARIAL = MappingProxyType({"hinge": Hinge, "non_saturating": NonSaturating, "wasserstein": Wasserstein,
                                 "least_squares": LeastSquares})


def _adversarial(name: str):
    if name not in _ADVERSARIAL:
        raise ValueError(f"unknown adversarial loss {name!r}; choose one of: {', '.join(_ADVERSARIAL)}")
    return _ADVERSARIAL[name]()


def _settings(obj: object) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in vars(obj).items() if not k.startswith("_"))


def _labels(labels: LabelPair | None, *, fake_too: bool, real_too: bool = True):
    """The class labels the classifier is trained on; unconditional data is refused, by name."""
    missing = [name for name, wanted in (("real", real_too), ("fake", fake_too))
               if wanted and (labels is None or getattr(labels, name) is None)]
    if missing:
        raise ValueError(f"the acgan loss trains D to classify images and needs class labels, but the "
                         f"{' and '.join(missing)} batch has none (the data is unconditional: use a labelled "
                         "dataset, or another loss)")
    return labels.real, labels.fake


@register("loss", "acgan")
class ACGAN:
    """AC-GAN (Odena et al. 2017): an adversarial loss plus a cross-entropy classifier on D's class logits.

    D: adversarial D loss + ``classifier_weight`` · CE(class_logits(real), real labels); G:
    adversarial G loss + ``classifier_weight`` · CE(class_logits(fake), the labels G was given).
    This is StudioGAN's AC path: D's classifier term covers real images only
    (PyTorch-StudioGAN ``src/worker.py:307-309``; the fake term at ``:313-315`` is ADC-GAN's only),
    G's covers its images (``src/worker.py:575-577``), each a mean cross-entropy
    (``src/utils/losses.py:40-46``). ``classify_fakes`` also trains D to classify generated
    images by the class they were conditioned on, as eriklindernoren/PyTorch-GAN's AC-GAN does
    (``implementations/acgan/acgan.py:212``). Needs a head giving ``class_logits``
    (``acgan_output``) and class-labelled data.
    """

    needs_outputs = ("class_logits",)

    def __init__(self, *, adversarial: Adversarial = "hinge", classifier_weight: NonNegative = 1.0,
                 classify_fakes: bool = False) -> None:
        self.adversarial = adversarial
        self.classifier_weight = classifier_weight
        self.classify_fakes = classify_fakes
        self._loss = _adversarial(adversarial)

    def discriminator_loss(self, *, real: DiscriminatorOutput, fake: DiscriminatorOutput,
                           labels: LabelPair) -> torch.Tensor:
        real_labels, fake_labels = _labels(labels, fake_too=self.classify_fakes)
        loss = self._loss.discriminator_objective(real.logit, fake.logit)
        classifier = F.cross_entropy(real.class_logits.float(), real_labels)
        if self.classify_fakes:
            classifier = classifier + F.cross_entropy(fake.class_logits.float(), fake_labels)
        return loss + self.classifier_weight * classifier

    def generator_loss(self, *, fake: DiscriminatorOutput, real: DiscriminatorOutput | None = None,
                       labels: LabelPair) -> torch.Tensor:
        _, fake_labels = _labels(labels, fake_too=True, real_too=False)
        loss = self._loss.generator_objective(fake.logit)
        return loss + self.classifier_weight * F.cross_entropy(fake.class_logits.float(), fake_labels)

    def __repr__(self) -> str:
        return f"ACGAN({_settings(self)})"


@register("loss", "feature_matching")
class FeatureMatching:
    """Feature matching (Salimans et al. 2016, §3.1): G matches the mean of D's features on real images.

    D minimises the chosen adversarial loss; G minimises
    ‖mean_batch f(real) − mean_batch f(fake)‖², f being D's ``features`` extra (``pooled_output``),
    the real features detached, as in StudioGAN (``src/worker.py:595``). The paper's squared L2
    (seen in a summary of §3.1, not checked against the paper) is ``distance: squared``; the
    official CIFAR-10 code takes the mean absolute difference instead
    (openai/improved-gan ``mnist_svhn_cifar10/train_cifar_feature_matching.py:110-112``, also
    StudioGAN's ``src/utils/losses.py:255-259``): ``distance: mean_absolute``.
    """

    needs_outputs = ("features",)
    generator_needs_real = True

    def __init__(self, *, adversarial: Adversarial = "non_saturating",
                 distance: Literal["squared", "mean_absolute"] = "squared") -> None:
        self.adversarial = adversarial
        self.distance = distance
        self._loss = _adversarial(adversarial)

    def discriminator_loss(self, *, real: DiscriminatorOutput, fake: DiscriminatorOutput,
                           labels: LabelPair | None = None) -> torch.Tensor:
        return self._loss.discriminator_objective(real.logit, fake.logit)

    def generator_loss(self, *, fake: DiscriminatorOutput, real: DiscriminatorOutput,
                       labels: LabelPair | None = None) -> torch.Tensor:
        target = real.features.detach().float().flatten(1).mean(dim=0)  # (F,)
        difference = target - fake.features.float().flatten(1).mean(dim=0)
        if self.distance == "squared":
            return difference.square().sum()
        return difference.abs().mean()

    def __repr__(self) -> str:
        return f"FeatureMatching({_settings(self)})"
