"""BigGAN's modified orthogonal regularisation of the generator (``regularizer`` kind).

BigGAN-PyTorch adds the penalty's gradient straight to ``param.grad`` after G's backward
(utils.py:646-655 ``ortho``): for each parameter with at least two axes, w = param.view(rows, -1),
grad = 2·((w wᵀ) ⊙ (1 − I))·w, added as strength·grad. Here it is a loss term whose autograd
gradient is that same update, so it joins G's loss like any other regulariser.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import pydantic
import torch

from ganforge.records import TaggedParameter
from ganforge.registry import register

__all__ = ["Orthogonal"]


@register("regularizer", "orthogonal")
class Orthogonal:
    """strength/2 · Σ ‖(w wᵀ) ⊙ (1 − I)‖²_F over G's weights, w = the weight as rows × (everything else).

    Its gradient is exactly BigGAN-PyTorch's ``utils.ortho`` update, strength·2·((w wᵀ) ⊙ (1 − I))·w
    (utils.py:652-655): only off-diagonal row correlations are pushed to 0, row norms are free.
    Skipped, as there: parameters with fewer than two axes (utils.py:650, ``len(param.shape) < 2``:
    biases, batch-norm gains, attention's γ) and parameters tagged ``no_orthogonal`` (BigGAN-PyTorch
    blacklists the shared class embedding, train_fns.py:78-80). With spectral norm the penalty is on
    the raw, unnormalised weight, as in BigGAN-PyTorch (its ``SN`` layers keep ``weight`` as the
    parameter, layers.py:86-99). ``strength`` 1e-4 is the value BigGAN-PyTorch calls "default for
    BigGAN" (utils.py:318 comment; ``ortho``'s own default, utils.py:646); its command-line default
    and its launch scripts use 0 (utils.py:318, scripts/launch_BigGAN_bs256x8.sh:9 ``--G_ortho 0.0``).
    """

    network = "generator"

    def __init__(self, *, strength: Annotated[float, pydantic.Field(ge=0)] = 1e-4) -> None:
        self.strength = strength

    def __call__(self, *, parameters: Sequence[TaggedParameter]) -> torch.Tensor:
        weights = [t.parameter for t in parameters
                   if t.parameter.ndim >= 2 and t.parameter.requires_grad and "no_orthogonal" not in t.tags]
        terms = [_off_diagonal_energy(w.reshape(w.shape[0], -1)) for w in weights]  # w: rows × rest
        if not terms:
            device = parameters[0].parameter.device if parameters else None
            return torch.zeros((), device=device)
        return 0.5 * self.strength * torch.stack(terms).sum()

    def __repr__(self) -> str:
        return f"Orthogonal(strength={self.strength!r})"


def _off_diagonal_energy(w: torch.Tensor) -> torch.Tensor:
    """‖(w wᵀ) ⊙ (1 − I)‖²_F for a rows × cols matrix.

    A tall matrix uses ‖wᵀw‖²_F − Σᵢ‖wᵢ‖⁴ (the same value, since ‖wwᵀ‖_F = ‖wᵀw‖_F and wwᵀ's
    diagonal holds the squared row norms), so BigGAN's first linear (24,576 × 20 at 128²) never
    builds a 24,576² matrix (rows > cols; the two terms differ by the off-diagonal energy, and the
    subtraction costs only float rounding of ‖wᵀw‖²_F).
    """
    if w.shape[0] <= w.shape[1]:
        gram = w @ w.t()  # rows × rows
        return (gram - torch.diag(torch.diagonal(gram))).pow(2).sum()
    return (w.t() @ w).pow(2).sum() - w.pow(2).sum(dim=1).pow(2).sum()
