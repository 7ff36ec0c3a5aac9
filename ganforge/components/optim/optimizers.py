"""Optimisers a blueprint can name. Each factory returns ``make(params) -> torch.optim.Optimizer``."""

from __future__ import annotations

from typing import Annotated, Callable, Iterable

from pydantic import Field

from ...registry import register

PositiveFloat = Annotated[float, Field(gt=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]


def _adam_family(cls_name: str, *, lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float) -> Callable[..., object]:
    def make(params: Iterable[object], *, fused: bool | None = None, foreach: bool | None = None) -> object:
        import torch

        cls = getattr(torch.optim, cls_name)
        return cls(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, fused=fused,
                   foreach=foreach)

    make.settings = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}  # type: ignore[attr-defined]
    return make


@register("optimizer", "adam")
def adam(*, lr: PositiveFloat = 2e-4, betas: tuple[Beta, Beta] = (0.5, 0.999), eps: PositiveFloat = 1e-8,
         weight_decay: Annotated[float, Field(ge=0)] = 0.0) -> Callable[..., object]:
    """Adam (Kingma & Ba 2015); defaults are DCGAN's (lr 2e-4, betas 0.5/0.999)."""
    return _adam_family("Adam", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


@register("optimizer", "adamw")
def adamw(*, lr: PositiveFloat = 2e-4, betas: tuple[Beta, Beta] = (0.5, 0.999), eps: PositiveFloat = 1e-8,
          weight_decay: Annotated[float, Field(ge=0)] = 0.01) -> Callable[..., object]:
    """AdamW: Adam with decoupled weight decay."""
    return _adam_family("AdamW", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


@register("optimizer", "rmsprop")
def rmsprop(*, lr: PositiveFloat = 5e-5, alpha: Beta = 0.99, eps: PositiveFloat = 1e-8) -> Callable[..., object]:
    """RMSprop, as in the original WGAN (lr 5e-5)."""

    def make(params: Iterable[object], *, fused: bool | None = None, foreach: bool | None = None) -> object:
        import torch

        return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, foreach=foreach)

    make.settings = {"lr": lr, "alpha": alpha, "eps": eps}  # type: ignore[attr-defined]
    return make
