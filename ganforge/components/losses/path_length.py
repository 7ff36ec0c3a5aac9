"""StyleGAN2's path-length regularisation of the generator (``regularizer`` kind, ``network = "generator"``).

Reference: NVlabs/stylegan2-ada-pytorch (commit d72cc7d) ``training/loss.py:24-36`` (settings,
running mean) and ``:77-92`` (the penalty). Lazy regularisation (StyleGAN2 runs it every 4th
generator step with the weight × 4) is the blueprint's ``every: 4``, handled by the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

import pydantic
import torch

from ganforge.records import GeneratorPass
from ganforge.registry import register

__all__ = ["PathLength"]


@register("regularizer", "path_length")
class PathLength:
    """weight · E[(‖Jᵀy‖ − a)²]: G's Jacobian w.r.t. its styles should have one length everywhere.

    A fresh pass on ``max(1, B // batch_shrink)`` latents (B: this G update's batch,
    ``loss.py:79-80``); y is Gaussian noise / sqrt(H·W) (``:81``), drawn from the engine's ``rng``;
    the gradient of Σ images·y w.r.t. the context entry ``context`` (the styles, (B, n, w_dim))
    gives lengths sqrt(mean over layers of Σ over w_dim of its square) (``:83-84``). The running
    mean a ← lerp(a, mean length, decay) (``:85-86``) is used undetached in the penalty, as in the
    reference (``:87``), and kept for the checkpoint (``state_dict``).
    """

    network = "generator"

    def __init__(
        self,
        *,
        weight: Annotated[float, pydantic.Field(ge=0)] = 2.0,
        decay: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.01,
        batch_shrink: Annotated[int, pydantic.Field(ge=1)] = 2,
        context: str = "style",
    ) -> None:
        self.weight = weight
        self.decay = decay
        self.batch_shrink = batch_shrink
        self.context = context
        self.pl_mean = torch.zeros([])  # 0-d fp32, moved to the training device on first use

    @property
    def needs_context(self) -> tuple[str, ...]:
        """The entry it differentiates through: assembly refuses a generator that provides none."""
        return (self.context,)

    def __call__(self, *, fake: torch.Tensor, generate: Callable[[int], GeneratorPass],
                 rng: torch.Generator) -> torch.Tensor:
        generated = generate(max(1, fake.shape[0] // self.batch_shrink))
        images = generated.images
        if self.context not in generated.context:
            shown = ", ".join(sorted(generated.context)) or "none"
            raise ValueError(f"path_length differentiates the images w.r.t. the generator's {self.context!r} "
                             f"context entry, which this generator does not build (its entries: {shown}); "
                             "set `context:` to one of them (StyleGAN2: a mapping network's 'style')")
        ws = generated.context[self.context]
        noise = torch.randn(images.shape, generator=rng, device=images.device, dtype=images.dtype)
        noise = noise / math.sqrt(images.shape[2] * images.shape[3])
        (grads,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
        squares = grads.float().square().sum(dim=-1)  # (B, n) for per-layer styles, (B,) for a shared entry
        lengths = (squares.flatten(1).mean(dim=1) if squares.ndim > 1 else squares).sqrt()  # (B,)
        pl_mean = self.pl_mean.to(lengths.device).lerp(lengths.mean(), self.decay)
        self.pl_mean = pl_mean.detach()
        return (lengths - pl_mean).square().mean() * self.weight

    def state_dict(self) -> dict[str, Any]:
        return {"pl_mean": float(self.pl_mean)}  # fp32 → float is exact, so resume is too

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pl_mean = torch.tensor(float(state["pl_mean"]), dtype=torch.float32)

    def __repr__(self) -> str:
        return (f"PathLength(weight={self.weight!r}, decay={self.decay!r}, batch_shrink={self.batch_shrink!r}, "
                f"context={self.context!r})")
