"""Intra-class FID: the FID between real and generated images of each class, averaged over classes.

FID pools all classes, so a conditional generator that draws every class as some other class can
still score well; intra-class FID compares each class with itself. As PyTorch-StudioGAN computes it
(``src/worker.py``, ``calculate_intra_class_fid``, commit 947b35e): for every class c (line 1394)
the reference is the evaluation dataset's images of class c (line 1395, ``make_target_cls_sampler``
in ``src/utils/sample.py`` lines 242-253), the training split by default (``src/main.py`` line 108,
``--ref_dataset`` default "train"; ``src/loader.py`` line 145), their mean and covariance (line
1405) against the features of images generated for class c (lines 1415-1421), FID per class (line
1439), and the plain mean over classes (line 1463).

Differences: StudioGAN generates as many images of class c as the reference has (line 1419,
``num_generate=num_samples``) and takes every training image of the class; here the reference is
evaluation's usual subset of ``n`` training images and the ``n`` generated images have uniform
random classes, so per-class counts are about n / classes on each side. A class with fewer than
2 images on either side has no sample covariance and is refused, naming the class and its counts
(StudioGAN's loop, lines 1394-1449, has no such guard).
"""

from __future__ import annotations

import torch

from ganforge.errors import GanforgeError
from ganforge.registry import register

from .fid import feature_stats, frechet_distance

__all__ = ["IntraFID", "intra_class_fid"]


def intra_class_fid(real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor,
                    fake_labels: torch.Tensor) -> float:
    """Mean over the classes present in either set of FID(real of class c, fake of class c), float64."""
    real_labels = torch.as_tensor(real_labels).reshape(-1).to(real.device)
    fake_labels = torch.as_tensor(fake_labels).reshape(-1).to(fake.device)
    if real_labels.numel() != real.shape[0] or fake_labels.numel() != fake.shape[0]:
        raise GanforgeError(f"intra_fid: {real.shape[0]} reference features but {real_labels.numel()} classes, "
                            f"{fake.shape[0]} generated features but {fake_labels.numel()} classes")
    classes = sorted(set(real_labels.tolist()) | set(fake_labels.tolist()))
    counts = {c: (int((real_labels == c).sum()), int((fake_labels == c).sum())) for c in classes}
    short = [c for c in classes if min(counts[c]) < 2]
    if short:
        c = short[0]
        others = f" (and {len(short) - 1} more classes)" if len(short) > 1 else ""
        raise GanforgeError(f"intra_fid: class {c} has {counts[c][0]} reference and {counts[c][1]} generated images"
                            f"{others}; each class needs at least 2 of each: raise --n")
    distances = []
    for c in classes:
        mu_r, sigma_r = feature_stats(real[real_labels == c])
        mu_f, sigma_f = feature_stats(fake[fake_labels == c])
        distances.append(frechet_distance(mu_r, sigma_r, mu_f, sigma_f))
    return sum(distances) / len(distances)


@register("metric", "intra_fid")
class IntraFID:
    """Intra-class FID (lower is better): per-class FID of a class-conditional generator, averaged over classes.

    Reads the generated images' conditioning classes and the reference images' classes, so it needs
    a class-conditional run and the run's training data as the reference (see the module docstring
    for StudioGAN's definition and how this differs). Output key ``intra_fid``.
    """

    name = "intra_fid"
    needs_real = True
    needs_logits = False
    needs_labels = True
    needs_real_labels = True

    def __init__(self) -> None:
        pass

    def compute(self, *, real: torch.Tensor | None, fake: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_stats: tuple[torch.Tensor, torch.Tensor] | None = None, fake_labels: torch.Tensor | None = None,
                real_labels: torch.Tensor | None = None) -> dict[str, float]:
        if real is None:
            raise GanforgeError("intra_fid needs per-image reference features, not only their mean and covariance")
        if fake_labels is None:
            raise GanforgeError("intra_fid compares classes: it needs the generated images' classes "
                                "(a class-conditional run)")
        if real_labels is None:
            raise GanforgeError("intra_fid compares classes: it needs the class of every reference image "
                                "(the run's training data, not a --reference folder or file)")
        return {"intra_fid": intra_class_fid(real, real_labels, fake, fake_labels)}

    def __repr__(self) -> str:
        return "IntraFID()"
