"""A conditioning context through the generator: per-layer codes from z, read by FiLM layers.

``layer_codes`` (kind ``context``) runs at the start of every generator pass and provides the
per-layer entry ``code``: one vector per consuming layer, mapped from z. ``film`` (a layer)
consumes it by declaring ``code_dim`` (ganforge fills in the entry's size) and a ``code`` keyword
in ``forward`` (ganforge passes the i-th consumer its slice ``code[:, i]``). Every layer so gets
its own direct conditioning on the latent, without carrying it along as extra feature planes.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class LayerCodes(nn.Module):
    """Context producer: a code of ``dim`` values per consuming layer, a linear map of z.

    ``code = (W z + b)`` reshaped to (B, n, dim), ``n`` being the number of stack components that
    read ``code`` (ganforge counts them and passes ``consumers``). One shared linear map keeps the
    codes correlated across layers, as the styles of one latent are in StyleGAN.

    Settings:
        dim: the size of each layer's code (>= 1).
    """

    provides: ClassVar[dict[str, str]] = {"code": "per_layer"}
    """The entry it gives: one (B, dim) code per consumer, stacked as (B, n, dim)."""

    def __init__(self, *, latent_dim: int, consumers: dict[str, int], dim: int = 16) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.count = int(consumers.get("code", 0))
        if self.count < 1:
            raise ValueError("layer_codes provides 'code', but no generator component reads it "
                             "(add a layer such as film, or remove layer_codes)")
        self.dim = dim
        self.linear = nn.Linear(latent_dim, self.count * dim)

    def forward(self, *, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"code": self.linear(z).view(z.shape[0], self.count, self.dim)}


class FiLM(nn.Module):
    """Feature-wise linear modulation (Perez et al. 2018) by this layer's ``code``.

    ``(γ, β) = split(W code + b)``, each (B, C); output ``x · (1 + γ) + β``, per image and channel,
    for a feature map (B, C, H, W). Modulating around 1 leaves the features
    unchanged when the code's map gives zeros. Needs a context producer that provides ``code``
    (``layer_codes``); ``code_dim`` is that entry's size, set by ganforge, never in a blueprint.
    """

    def __init__(self, *, in_channels: int, code_dim: int = 0) -> None:
        super().__init__()
        if code_dim < 1:
            raise ValueError("film is modulated by the 'code' context entry, which no context producer provides "
                             "here (add {type: layer_codes} to generator.context)")
        self.in_channels = in_channels
        self.code_dim = code_dim
        self.modulation = nn.Linear(code_dim, 2 * in_channels)

    def forward(self, x: torch.Tensor, *, code: torch.Tensor | None = None) -> torch.Tensor:
        if code is None:
            raise ValueError("film needs its code (the 'code' context entry); got code=None")
        gamma, beta = self.modulation(code).chunk(2, dim=1)  # (B, C) each
        return x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
