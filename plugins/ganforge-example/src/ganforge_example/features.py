"""A discriminator head with a named extra and a loss that reads it: hinge plus feature matching.

Together they show ganforge's named discriminator outputs. The head returns ``{"logit", "features"}``
and declares ``outputs = ("features",)``; the loss declares ``needs_outputs = ("features",)``, so
ganforge refuses, at assembly, a blueprint whose head does not give the features. Nothing here
imports ganforge: the loss reads ganforge's records by their fields (``DiscriminatorOutput.logit``,
``.features``), which is all the contract asks of it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class FeatureOutput(nn.Module):
    """Discriminator head: mean-pooled ReLU features, a linear logit, and the features as an extra.

    ``features = mean over positions of relu(x)`` (B, C) for a feature map (B, C, H, W);
    ``logit = linear(features)`` (B, 1).
    Returning the features lets a loss compare what D sees in real and generated images, not only
    its verdict. Mean pooling (not a sum) keeps the features' scale independent of the resolution.
    """

    outputs = ("features",)
    """The extra beside ``logit`` that ``forward`` returns (ganforge's ``outputs`` capability)."""

    def __init__(self, *, in_channels: int) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.linear = nn.Linear(in_channels, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = F.relu(x).flatten(2).mean(dim=2)  # (B, C)
        return {"logit": self.linear(features), "features": features}


class HingeFeatureMatching:
    """Hinge loss, plus feature matching for G (Salimans et al. 2016, §3.1).

    D minimises the hinge loss ``mean(relu(1 - r)) + mean(relu(1 + f))`` on its real (``r``) and
    generated (``f``) logits. G minimises ``-mean(f)`` plus ``feature_weight`` times the mean
    squared difference between the batch means of D's features on real images (detached: G does
    not move D's view of the data) and on its own images. The matching term gives G a signal about
    *what* D sees, which keeps G's update informative when D's verdict saturates.

    ``real``/``fake`` are ganforge's ``records.DiscriminatorOutput`` (``logit`` (B,), extras by name);
    ``labels`` (``records.LabelPair``) is accepted and unused: the loss is unconditional.

    Settings:
        feature_weight: weight of the feature-matching term in G's loss (0: plain hinge).
    """

    needs_outputs = ("features",)
    """D's extras this loss reads: assembly refuses a head that does not declare them."""
    generator_needs_real = True
    """G's loss compares with D's features on real images, so the engine scores a real batch in G's step."""

    def __init__(self, *, feature_weight: float = 1.0) -> None:
        if feature_weight < 0:
            raise ValueError(f"feature_weight must be >= 0, got {feature_weight}")
        self.feature_weight = float(feature_weight)

    def discriminator_loss(self, *, real: Any, fake: Any, labels: Any = None) -> torch.Tensor:
        return F.relu(1.0 - real.logit).mean() + F.relu(1.0 + fake.logit).mean()

    def generator_loss(self, *, fake: Any, real: Any, labels: Any = None) -> torch.Tensor:
        target = real.features.detach().float().flatten(1).mean(dim=0)  # (F,)
        matching = (fake.features.float().flatten(1).mean(dim=0) - target).square().mean()
        return -fake.logit.mean() + self.feature_weight * matching

    def __repr__(self) -> str:
        return f"{type(self).__name__}(feature_weight={self.feature_weight})"
