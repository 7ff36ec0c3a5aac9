"""Adversarial losses (``loss`` kind): what D and G minimise, given D's outputs.

Each loss has ``discriminator_loss(*, real, fake)`` and ``generator_loss(*, fake)`` over
``records.DiscriminatorOutput``s (``labels`` too where a loss reads classes); arguments are
keyword-only so real and fake can never be swapped. The losses here read ``logit`` only; the
caller detaches fake images for the discriminator step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.records import DiscriminatorOutput
from ganforge.registry import register

__all__ = ["AdversarialLoss", "Hinge", "LeastSquares", "NonSaturating", "Wasserstein"]


class AdversarialLoss:
    """Base class: the two objectives of a GAN loss (the ``loss`` contract: ``ganforge.contracts.Loss``)."""

    generator_needs_real: bool = False
    """True when ``generator_loss`` also takes ``real`` (the engine then runs D on a real batch)."""

    def discriminator_loss(self, *, real: DiscriminatorOutput, fake: DiscriminatorOutput) -> torch.Tensor:
        return self.discriminator_objective(real.logit, fake.logit)

    def generator_loss(self, *, fake: DiscriminatorOutput) -> torch.Tensor:
        return self.generator_objective(fake.logit)

    def discriminator_objective(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """D's loss on raw logits (losses that add terms, like AC-GAN's, build on it)."""
        raise NotImplementedError

    def generator_objective(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """G's loss on raw logits."""
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({settings})"


@register("loss", "hinge")
class Hinge(AdversarialLoss):
    """Hinge loss (SAGAN, BigGAN): D: E[relu(1−D(x))] + E[relu(1+D(G(z)))]; G: −E[D(G(z))]."""

    def __init__(self) -> None:
        pass

    def discriminator_objective(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def generator_objective(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()


@register("loss", "non_saturating")
class NonSaturating(AdversarialLoss):
    """Non-saturating logistic loss (Goodfellow et al.), softplus form for stability.

    D: E[softplus(−D(x))] + E[softplus(D(G(z)))] (binary cross-entropy on logits);
    G: E[softplus(−D(G(z)))] = −E[log sigmoid(D(G(z)))].
    """

    def __init__(self) -> None:
        pass

    def discriminator_objective(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def generator_objective(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake_logits).mean()


@register("loss", "wasserstein")
class Wasserstein(AdversarialLoss):
    """Wasserstein critic loss (WGAN): D: E[D(G(z))] − E[D(x)]; G: −E[D(G(z))].

    Needs a Lipschitz constraint on D (spectral norm or the gradient_penalty regulariser).
    """

    def __init__(self) -> None:
        pass

    def discriminator_objective(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return fake_logits.mean() - real_logits.mean()

    def generator_objective(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()


@register("loss", "least_squares")
class LeastSquares(AdversarialLoss):
    """Least-squares loss (LSGAN, Mao et al.) with the paper's 0-1-1 target coding by default.

    D: ½E[(D(x)−real_target)²] + ½E[(D(G(z))−fake_target)²]; G: ½E[(D(G(z))−generator_target)²].
    The paper's alternative (−1, 1, 0) coding is fake_target −1, real_target 1, generator_target 0.
    """

    def __init__(self, *, fake_target: float = 0.0, real_target: float = 1.0, generator_target: float = 1.0) -> None:
        self.fake_target = fake_target
        self.real_target = real_target
        self.generator_target = generator_target

    def discriminator_objective(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * (real_logits - self.real_target).pow(2).mean() + 0.5 * (fake_logits - self.fake_target).pow(2).mean()

    def generator_objective(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * (fake_logits - self.generator_target).pow(2).mean()
