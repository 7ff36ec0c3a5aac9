"""Gradient regularisers for the discriminator (``regularizer`` kind).

Called as ``reg(discriminator=d, real=x, fake=g)``, where ``d`` maps images to logits
(labels already bound by the caller); returns the weighted penalty, built with
``create_graph=True`` so it can be added to D's loss and back-propagated. The caller decides
whether D's spectral-norm vectors may advance during this extra pass
(``Network.frozen_normalisation()``).
"""

from __future__ import annotations

from typing import Annotated, Callable

import pydantic
import torch

from ganforge.registry import register

__all__ = ["GradientPenalty", "R1"]

Discriminator = Callable[[torch.Tensor], torch.Tensor]
NonNegative = Annotated[float, pydantic.Field(ge=0)]


def _input_gradients(discriminator: Discriminator, images: torch.Tensor) -> torch.Tensor:
    images = images.detach().requires_grad_(True)
    logits = discriminator(images)
    (grad,) = torch.autograd.grad(logits.sum(), images, create_graph=True)
    return grad.flatten(1)


@register("regularizer", "r1")
class R1:
    """R1 penalty (Mescheder et al. 2018): gamma/2 · E‖∇ₓD(x)‖² on real images only."""

    def __init__(self, *, gamma: NonNegative = 10.0) -> None:
        self.gamma = gamma

    def __call__(self, *, discriminator: Discriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        grad = _input_gradients(discriminator, real)
        return 0.5 * self.gamma * grad.pow(2).sum(dim=1).mean()

    def __repr__(self) -> str:
        return f"R1(gamma={self.gamma!r})"


@register("regularizer", "gradient_penalty")
class GradientPenalty:
    """WGAN-GP (Gulrajani et al. 2017): weight · E(‖∇D(x̂)‖ − target)² at random interpolates.

    x̂ = α·real + (1−α)·fake with α ~ U(0, 1) drawn per sample.
    """

    def __init__(self, *, weight: NonNegative = 10.0, target: NonNegative = 1.0) -> None:
        self.weight = weight
        self.target = target

    def __call__(self, *, discriminator: Discriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if real.shape != fake.shape:
            raise ValueError(f"gradient_penalty needs real and fake batches of one shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
        alpha = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), device=real.device, dtype=real.dtype)
        mixed = alpha * real.detach() + (1 - alpha) * fake.detach()
        grad = _input_gradients(discriminator, mixed)
        return self.weight * (grad.norm(2, dim=1) - self.target).pow(2).mean()

    def __repr__(self) -> str:
        return f"GradientPenalty(weight={self.weight!r}, target={self.target!r})"
