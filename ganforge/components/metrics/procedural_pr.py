"""Precision and recall on the built-in procedural data, in its analytic feature space (no Inception).

An ImageNet network says little about 16×16 gratings, and raw pixels are too strict (a grating
shifted by half a period is far from every real image). The ``procedural`` data's own detector
reads class energy, phase and blob position back from pixels, so a generator drawing a few
copies per class covers few real images there: low recall. Precision: generated images that
look like some real one. Comparable only between runs on the same data settings.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field

from ganforge.errors import GanforgeError
from ganforge.registry import register

from .precision_recall import inside_manifold, knn_radii

__all__ = ["ProceduralPrecisionRecall", "class_accuracy", "phase_diversity"]


def phase_diversity(features: torch.Tensor) -> float:
    """1 − the mean resultant length of the grating phase within each detected class, averaged over classes.

    ``features`` are the procedural detector's (N, classes + 4). About 0 when a class is drawn as
    copies of one image, about 1 when its phases are uniform (real data: 0.94 with 250 per class).
    Label-free: images are grouped by their strongest class, so it needs no conditioning labels.
    """
    classes = features.shape[1] - 4
    detected = features[:, :classes].argmax(dim=1)
    phasors = torch.complex(features[:, classes + 1], features[:, classes])
    spreads = [1.0 - float(phasors[detected == k].mean().abs()) for k in range(classes)
               if int((detected == k).sum()) >= 2]
    return sum(spreads) / len(spreads) if spreads else 0.0


def class_accuracy(features: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(overall, worst class): how often the detected class is the one the image was conditioned on.

    ``features`` are the procedural detector's (N, classes + 4); ``labels`` the conditioning classes.
    The worst class is the lowest per-class accuracy over the classes that occur in ``labels``: a
    generator that draws one class as another scores 0 there however well it draws the rest.
    """
    classes = features.shape[1] - 4
    labels = labels.to(features.device)
    right = (features[:, :classes].argmax(dim=1) == labels).double()
    per_class = [float(right[labels == k].mean()) for k in range(classes) if int((labels == k).sum())]
    return float(right.mean()), min(per_class)


@register("metric", "procedural_pr")
class ProceduralPrecisionRecall:
    """Improved precision/recall (k-NN manifolds, as ``pr``) in the procedural detector's feature space.

    ``bind(data=...)`` reads the first ``reference`` training images of the run's ``procedural``
    data (real/real with 1000 each: precision and recall about 0.97 at k = 3), so ``evaluate``
    and in-training evaluation need no ``--reference`` and no Inception file. Also reports
    ``procedural_phase_diversity`` (see ``phase_diversity``), which recall folds together with fidelity,
    and for a class-conditional run ``procedural_class_accuracy`` / ``procedural_worst_class_accuracy``
    (see ``class_accuracy``): whether each image shows the class it was asked for.
    """

    name = "procedural_pr"
    needs_real = False
    needs_logits = False
    needs_inception_features = False
    needs_labels = True

    def __init__(self, *, k: Annotated[int, Field(ge=1)] = 3,
                 reference: Annotated[int, Field(ge=4)] = 1000) -> None:
        self.k, self.reference = k, reference
        self.detector: Any = None
        self.real: torch.Tensor | None = None

    def bind(self, *, data: Any, registry: Any = None) -> ProceduralPrecisionRecall:
        """A copy holding the run's detector and the detected features of its reference images.

        ``registry``: the run's (default: the global one), which builds the reference data.
        """
        from ganforge.registry import default_registry

        registry = default_registry() if registry is None else registry
        if data.type != "procedural":
            raise GanforgeError(f"metric {self.name} scores the built-in procedural data and reads its settings from "
                                f"the run's blueprint; this run's data is {data.type!r}")
        dataset = registry.get("dataset", "procedural").build(data.component_settings())
        count = min(self.reference, len(dataset))
        if count <= self.k:
            raise GanforgeError(f"metric {self.name}: data.size {len(dataset)} leaves too few reference images "
                                f"for k={self.k}")
        bound = type(self)(k=self.k, reference=self.reference)
        bound.detector = dataset.detector()
        bound.real = bound.detector(torch.stack([dataset[i][0] for i in range(count)]))
        return bound

    def compute(self, *, real: torch.Tensor | None, fake: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
                fake_labels: torch.Tensor | None = None) -> dict[str, float]:
        reference = real if real is not None else self.real
        if reference is None:
            raise GanforgeError(f"metric {self.name} needs the run's data: bind(data=...) first")
        real_radii = knn_radii(reference, self.k)
        fake_radii = knn_radii(fake, self.k)
        precision = inside_manifold(fake, reference, real_radii).double().mean()
        recall = inside_manifold(reference, fake, fake_radii).double().mean()
        values = {"procedural_precision": float(precision), "procedural_recall": float(recall),
                  "procedural_phase_diversity": phase_diversity(fake)}
        if fake_labels is not None:
            overall, worst = class_accuracy(fake, fake_labels)
            values.update(procedural_class_accuracy=overall, procedural_worst_class_accuracy=worst)
        return values

    def __repr__(self) -> str:
        return f"ProceduralPrecisionRecall(k={self.k}, reference={self.reference})"
