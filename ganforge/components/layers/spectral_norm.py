"""Spectral normalisation, and the spectrally normalised conv / linear / embedding layers.

Built on torch's own ``torch.nn.utils.parametrizations.spectral_norm`` (power iteration on
``u``/``v`` buffers that live in the state dict and move only in training mode), plus what
a GAN needs on top of it:

* ``frozen_spectral_norm(module)``: stop ``u``/``v`` updates across a whole network while it
  stays in training mode (the official SAGAN code does not update ``u`` in D's pass on
  generated images: github brain-research/self-attention-gan at ad9612e, ``model.py:274-275``
  passes ``update_collection="NO_OPS"``, which ``ops.py:170`` skips);
* ``refresh_spectral_norm(module)``: reset ``u``/``v`` to the exact leading singular vectors
  of the current weights (used by init schemes after re-initialising weights);
* ``apply_spectral_norm(...)``: the one place blocks go through to spectrally normalise a
  layer, so every component uses the same settings (``spectral_norm``, ``sn_eps``,
  ``sn_iterations``).

torch's private internals (``_SpectralNorm``, ``_u``/``_v``, ...) are used only through
``ganforge.components.layers.torch_spectral_norm``.

Numerical note: torch normalises ``x / max(‖x‖, eps)`` while the official TF code uses
``x / (‖x‖ + eps)`` (``ops.py:120-122``); with eps = 1e-12 the two agree to float precision.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Iterator, TypeVar

import pydantic
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ganforge.components.layers.torch_spectral_norm import (
    FP32SpectralNorm,
    is_spectral_norm,
    set_singular_vectors,
    sigma_estimate,
    weight_matrix,
)
from ganforge.registry import register

__all__ = [
    "SNEps",
    "SNIterations",
    "Channels",
    "SNConv2d",
    "SNLinear",
    "SNEmbedding",
    "apply_spectral_norm",
    "frozen_spectral_norm",
    "refresh_spectral_norm",
    "spectral_norm_modules",
    "buffers_outside_spectral_norm",
    "sigma_estimates",
]

# Shared setting types, so every component validates SN settings identically.
SNEps = Annotated[float, pydantic.Field(gt=0)]
SNIterations = Annotated[int, pydantic.Field(ge=1)]
Channels = Annotated[int, pydantic.Field(ge=1)]

M = TypeVar("M", bound=nn.Module)


def apply_spectral_norm(
    module: M,
    *,
    spectral_norm: bool = True,
    sn_eps: float = 1e-12,
    sn_iterations: int = 1,
    name: str = "weight",
) -> M:
    """Spectrally normalise ``module.<name>`` in place (a no-op when ``spectral_norm`` is False).

    ConvTranspose layers are normalised along their output dimension (torch's default).
    """
    if not spectral_norm:
        return module
    if sn_iterations < 1:
        raise ValueError(f"sn_iterations must be at least 1, got {sn_iterations}")
    if sn_eps <= 0:
        raise ValueError(f"sn_eps must be positive, got {sn_eps}")
    weight = getattr(module, name)
    dim = 1 if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    parametrize.register_parametrization(module, name, FP32SpectralNorm(weight, sn_iterations, dim, sn_eps))
    return module


def spectral_norm_modules(module: nn.Module) -> Iterator[nn.Module]:
    """Every spectral-norm parametrisation in ``module``'s tree (each owns one ``u``/``v`` pair)."""
    for sub in module.modules():
        if is_spectral_norm(sub):
            yield sub


def buffers_outside_spectral_norm(module: nn.Module) -> list[torch.Tensor]:
    """``module``'s buffers except the power-iteration ``u``/``v`` (e.g. batch-norm statistics), in order."""
    vectors = {id(buffer) for layer in spectral_norm_modules(module) for buffer in layer.buffers()}
    return [buffer for buffer in module.buffers() if id(buffer) not in vectors]


@contextlib.contextmanager
def frozen_spectral_norm(module: nn.Module) -> Iterator[nn.Module]:
    """Stop power-iteration updates of ``u``/``v`` everywhere in ``module`` for the duration.

    Everything else keeps its mode (batch norm still uses and updates batch statistics,
    dropout stays on), so this is exactly the official SAGAN discriminator pass on generated
    images. Each weight is divided by the σ estimated from the stored ``u``/``v``. Calling
    ``module.train()`` inside the block re-enables the updates; the previous per-layer modes
    are restored on exit, also after an exception. Nesting is fine.
    """
    layers = list(spectral_norm_modules(module))
    previous = [layer.training for layer in layers]
    try:
        for layer in layers:
            layer.training = False
        yield module
    finally:
        for layer, mode in zip(layers, previous):
            layer.training = mode


def _parametrized_inputs(module: nn.Module) -> Iterator[tuple[nn.Module, torch.Tensor]]:
    """(spectral-norm parametrisation, the tensor it normalises) pairs in ``module``'s tree."""
    for sub in module.modules():
        if not parametrize.is_parametrized(sub):
            continue
        for plist in sub.parametrizations.values():
            value = plist.original
            for step in plist:
                if is_spectral_norm(step):
                    yield step, value
                    if value.ndim > 1:
                        with torch.no_grad():
                            value = value / _sigma(step, value)
                    else:
                        value = F.normalize(value, dim=0, eps=step.eps)
                else:
                    value = step(value)


def _sigma(step: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    return sigma_estimate(step, weight)


@torch.no_grad()
def refresh_spectral_norm(module: nn.Module) -> None:
    """Set every ``u``/``v`` in ``module`` to the exact leading singular vectors of its weight.

    After (re-)initialising weights the stored vectors are stale, so σ would be wrong for the
    first steps; this makes σ = ‖W‖₂ exactly (one SVD per layer). Meta tensors are skipped.
    """
    for step, weight in _parametrized_inputs(module):
        if weight.ndim <= 1 or weight.is_meta:
            continue
        mat = weight_matrix(step, weight.detach()).float()
        u, _, vh = torch.linalg.svd(mat, full_matrices=False)
        set_singular_vectors(step, u[:, 0], vh[0].conj())


@torch.no_grad()
def sigma_estimates(module: nn.Module) -> list[torch.Tensor]:
    """The current σ estimate uᵀWv of every spectral-norm parametrisation (for monitoring)."""
    return [_sigma(step, weight) for step, weight in _parametrized_inputs(module) if weight.ndim > 1]


def _same_padding(kernel_size: int) -> int:
    if kernel_size % 2 == 0:
        raise ValueError(
            f"padding=None ('same') needs an odd kernel_size, got {kernel_size}; set padding explicitly"
        )
    return kernel_size // 2


@register("layer", "snconv")
class SNConv2d(nn.Module):
    """2-D convolution with a spectrally normalised kernel (the SNGAN/SAGAN conv).

    ``padding=None`` means 'same' (kernel_size // 2, odd kernels only). The bias starts at
    zero after an init scheme runs, as in the official code (``ops.py:206``).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: Channels = 64,
        kernel_size: Annotated[int, pydantic.Field(ge=1)] = 3,
        stride: Annotated[int, pydantic.Field(ge=1)] = 1,
        padding: Annotated[int | None, pydantic.Field(ge=0)] = None,
        bias: bool = True,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        pad = _same_padding(kernel_size) if padding is None else padding
        self.conv = apply_spectral_norm(
            nn.Conv2d(in_channels, channels, kernel_size, stride=stride, padding=pad, bias=bias),
            spectral_norm=spectral_norm,
            sn_eps=sn_eps,
            sn_iterations=sn_iterations,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@register("layer", "snlinear")
class SNLinear(nn.Module):
    """Linear layer with a spectrally normalised weight matrix (vector → vector)."""

    def __init__(
        self,
        *,
        in_features: int,
        features: Channels = 128,
        bias: bool = True,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        self.linear = apply_spectral_norm(
            nn.Linear(in_features, features, bias=bias),
            spectral_norm=spectral_norm,
            sn_eps=sn_eps,
            sn_iterations=sn_iterations,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@register("layer", "snembedding")
class SNEmbedding(nn.Module):
    """Class-label embedding with a spectrally normalised table (labels → vector).

    Needs a class-conditional model (num_classes > 0). σ is that of the (classes × features)
    table, the same as the official code's normalisation of its transpose (``ops.py:258-261``).
    """

    def __init__(
        self,
        *,
        num_classes: int = 0,
        features: Channels = 128,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        if num_classes <= 0:
            raise ValueError("snembedding embeds class labels, so it needs a class-conditional model (num_classes > 0)")
        self.embedding = apply_spectral_norm(
            nn.Embedding(num_classes, features),
            spectral_norm=spectral_norm,
            sn_eps=sn_eps,
            sn_iterations=sn_iterations,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x)
