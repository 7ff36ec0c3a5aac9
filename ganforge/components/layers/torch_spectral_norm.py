"""The one place that touches torch's private spectral-norm internals.

``torch.nn.utils.parametrizations.spectral_norm`` keeps its state in a private class,
``_SpectralNorm``, with buffers ``_u``/``_v`` and helpers ``_reshape_weight_to_matrix`` and
``_power_method``. None of that is public API, so a torch upgrade may rename or change it.
Everything else in ganforge goes through the small functions below; ``tests/test_torch_internals.py``
checks each name, signature and behaviour we rely on, so an incompatible torch fails there, loudly,
instead of silently mis-normalising weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import _SpectralNorm

from .full_precision import autocast_enabled, without_autocast

__all__ = [
    "SpectralNormParametrization",
    "FP32SpectralNorm",
    "is_spectral_norm",
    "left_vector",
    "right_vector",
    "weight_matrix",
    "power_iteration",
    "set_singular_vectors",
    "sigma_estimate",
]

#: torch's spectral-norm parametrisation class (private in torch: ``_SpectralNorm``).
SpectralNormParametrization = _SpectralNorm


class FP32SpectralNorm(_SpectralNorm):
    """torch's parametrisation with σ kept in fp32 under autocast, and no power iteration on meta tensors.

    Autocast would run the power iteration's matrix-vector products in bf16, putting an error
    of about 1e-3 on σ (and so on every weight) at every step; they cost next to nothing in fp32.
    """

    def _power_method(self, weight_mat: torch.Tensor, n_power_iterations: int) -> None:
        # On the meta device (planning, inspect) there are no values to iterate, only per-op Python
        # overhead: the 15 initial iterations were about 85 % of planning a small blueprint.
        if weight_mat.is_meta:
            return
        super()._power_method(weight_mat, n_power_iterations)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if autocast_enabled(weight):
            with without_autocast(weight):
                return super().forward(weight.float())
        return super().forward(weight)


def is_spectral_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a spectral-norm parametrisation (owning one ``u``/``v`` pair)."""
    return isinstance(module, _SpectralNorm)


def left_vector(step: nn.Module) -> torch.Tensor:
    """The stored left singular vector estimate ``u`` (a buffer; shape: rows of the weight matrix)."""
    return step._u


def right_vector(step: nn.Module) -> torch.Tensor:
    """The stored right singular vector estimate ``v`` (a buffer; shape: columns of the weight matrix)."""
    return step._v


def weight_matrix(step: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """``weight`` as the 2-D matrix whose largest singular value ``step`` estimates (its ``dim`` first)."""
    return step._reshape_weight_to_matrix(weight)


def power_iteration(step: nn.Module, weight_mat: torch.Tensor, iterations: int = 1) -> None:
    """Advance ``u``/``v`` in place by ``iterations`` steps of power iteration on ``weight_mat``."""
    with torch.no_grad():
        step._power_method(weight_mat, iterations)


@torch.no_grad()
def set_singular_vectors(step: nn.Module, u: torch.Tensor, v: torch.Tensor) -> None:
    """Overwrite the stored ``u``/``v`` in place (they stay the same buffers)."""
    step._u.copy_(u)
    step._v.copy_(v)


def sigma_estimate(step: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """σ ≈ uᵀ W v from the stored vectors (what torch divides the weight by)."""
    return torch.vdot(step._u, torch.mv(weight_matrix(step, weight), step._v))
