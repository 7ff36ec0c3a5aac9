"""Weight-initialisation schemes for whole networks (``init`` kind).

Each registered factory takes its settings and returns ``apply(network) -> None``, which
initialises the weights of every convolution (including transposed), linear layer and
embedding in the network and zeroes their biases. It never touches normalisation gains,
conditional-BN tables or the attention γ (those are not conv/linear/embedding weights).
Spectrally normalised weights are handled: the *original* weight is initialised, then the
power-iteration vectors are reset to the exact leading singular vectors, so σ is right from
the first step. A module with ``ganforge_keep_init = True`` (e.g. a timm trunk with loaded
weights) is skipped together with everything inside it.
"""

from __future__ import annotations

from typing import Annotated, Callable, Iterator

import pydantic
import torch
from torch import nn
from torch.nn.utils import parametrize

from ganforge.components.layers.spectral_norm import refresh_spectral_norm
from ganforge.registry import register

__all__ = ["InitFn", "KEEP_INIT_ATTR", "default", "initialisable_modules", "normal", "orthogonal", "xavier"]

InitFn = Callable[[nn.Module], None]
KEEP_INIT_ATTR = "ganforge_keep_init"
_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding)

PositiveFloat = Annotated[float, pydantic.Field(gt=0)]


def initialisable_modules(network: nn.Module) -> Iterator[nn.Module]:
    """Conv / linear / embedding modules of ``network``, skipping subtrees marked keep-init."""
    if getattr(network, KEEP_INIT_ATTR, False):
        return
    if isinstance(network, _WEIGHTED):
        yield network
    for child in network.children():
        yield from initialisable_modules(child)


def _weight(module: nn.Module) -> torch.Tensor:
    """The trainable weight tensor (the original one under a parametrisation such as SN)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def _scheme(init_weight: Callable[[torch.Tensor], object]) -> InitFn:
    @torch.no_grad()
    def apply(network: nn.Module) -> None:
        for module in initialisable_modules(network):
            weight = _weight(module)
            if weight.is_meta:
                continue
            init_weight(weight)
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias.zero_()
            refresh_spectral_norm(module)

    return apply


@register("init", "orthogonal")
def orthogonal(*, gain: PositiveFloat = 1.0) -> InitFn:
    """Orthogonal weights (BigGAN / SAGAN-PyTorch reproductions); biases zero.

    Conv kernels are flattened to (out, in·k·k) rows, as ``torch.nn.init.orthogonal_`` does.
    """
    return _scheme(lambda w: nn.init.orthogonal_(w, gain=gain))


@register("init", "xavier")
def xavier(*, gain: PositiveFloat = 1.0) -> InitFn:
    """Xavier/Glorot uniform weights, as in the official SAGAN TensorFlow code (ops.py:200, :230); biases zero."""
    return _scheme(lambda w: nn.init.xavier_uniform_(w, gain=gain))


@register("init", "normal")
def normal(*, std: PositiveFloat = 0.02) -> InitFn:
    """Weights from N(0, std²), std 0.02 as in DCGAN; biases zero (norm gains stay at 1)."""
    return _scheme(lambda w: nn.init.normal_(w, mean=0.0, std=std))


@register("init", "default")
def default() -> InitFn:
    """Keep PyTorch's (and timm's) own layer initialisation; changes nothing."""

    def apply(network: nn.Module) -> None:
        return None

    return apply
