"""The SAGAN self-attention block (official ``sn_non_local_block_sim``; the paper's and other forms by setting)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ganforge.components.layers.spectral_norm import SNEps, SNIterations, apply_spectral_norm, frozen_spectral_norm
from ganforge.registry import register

__all__ = ["SelfAttention"]


@register("layer", "self_attention")
class SelfAttention(nn.Module):
    """SAGAN self-attention: every position attends to all (pooled) positions; starts as identity.

    Official code (``pooled=True``, github brain-research/self-attention-gan ``non_local.py:48-81``):
    query θ and key φ are 1×1 convs to C/8, value g a 1×1 conv to C/2; φ and g are 2×2
    max-pooled (N/4 key positions); scores θφᵀ are *not* scaled by 1/√d; softmax over keys;
    o = softmax·g → 1×1 conv back to C; output x + γ·o with the scalar γ initialised to 0.
    Convs have no bias there.

    The paper's equations (as quoted at paperswithcode.com/method/sagan-attention-module; the
    paper's PDF was not opened, so their numbering and any difference between arXiv versions
    are unverified): no pooling; f, g and the value h are 1×1 convs to C̄ = C/8, then
    v: C̄ → C, oⱼ = v(Σᵢ βⱼ,ᵢ h(xᵢ)), yᵢ = γ·oᵢ + xᵢ. That is ``pooled=False, value_divisor=8``.
    ``pooled=False`` alone keeps a C-channel value path and a C→C output conv.
    ``output_conv=False`` (value path of C channels only) adds h(x) directly, and ``bias=True``
    gives every 1×1 conv a bias: both as the TF-eager write-up behind sagan_faces128.yaml
    (github sthalles/blog-resources ``sagan/libs/self_attention.py:15-46``).

    ``kernel: fused`` runs ``scaled_dot_product_attention`` (the N×N map is never
    materialised); ``kernel: explicit`` computes softmax(QKᵀ)V as the reference implementations
    do, for baselines and checks. ``attention_map(x)`` returns the maps for visualisation.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        in_size: int,
        pooled: bool = True,
        value_divisor: Literal[1, 2, 8] | None = None,
        output_conv: bool = True,
        bias: bool = False,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
        kernel: Literal["fused", "explicit"] = "fused",
    ) -> None:
        super().__init__()
        if in_channels % 8 != 0:
            raise ValueError(
                f"self_attention needs a channel count divisible by 8 (query/key width is C/8), got {in_channels}"
            )
        if pooled and in_size % 2 != 0:
            raise ValueError(
                f"self_attention with pooled=True max-pools keys/values 2×2, so the input size must be even, "
                f"got {in_size}×{in_size}; place it at an even resolution or set pooled: false"
            )
        divisor = value_divisor if value_divisor is not None else (2 if pooled else 1)
        if not output_conv and divisor != 1:
            raise ValueError(
                f"self_attention with output_conv=false adds the value path to x, so it needs C value channels "
                f"(value_divisor 1, with pooled: false), got C/{divisor}"
            )
        self.pooled = pooled
        self.kernel = kernel
        qk_channels = in_channels // 8
        value_channels = in_channels // divisor
        sn = dict(spectral_norm=spectral_norm, sn_eps=sn_eps, sn_iterations=sn_iterations)

        def conv1x1(cin: int, cout: int) -> nn.Conv2d:
            return apply_spectral_norm(nn.Conv2d(cin, cout, 1, bias=bias), **sn)

        self.theta = conv1x1(in_channels, qk_channels)
        self.phi = conv1x1(in_channels, qk_channels)
        self.g = conv1x1(in_channels, value_channels)
        self.out = conv1x1(value_channels, in_channels) if output_conv else nn.Identity()
        self.gamma = nn.Parameter(torch.zeros(()))

    def _query_key_value(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B,1,N,C/8), k (B,1,M,C/8), v (B,1,M,Cv): one attention head, positions row-major."""
        if self.pooled and (x.shape[-2] % 2 or x.shape[-1] % 2):
            raise ValueError(f"self_attention with pooled=True needs even height and width, got {tuple(x.shape[-2:])}")
        theta, phi, g = self.theta(x), self.phi(x), self.g(x)
        if self.pooled:
            phi = F.max_pool2d(phi, 2)
            g = F.max_pool2d(g, 2)
        # Contiguous rows: the memory-efficient and cuDNN kernels need a unit stride in the last
        # dimension, and without it SDPA silently falls back to the math path (the full N×M map).
        q = rearrange(theta, "b c h w -> b 1 (h w) c").contiguous()
        k = rearrange(phi, "b c h w -> b 1 (h w) c").contiguous()
        v = rearrange(g, "b c h w -> b 1 (h w) c").contiguous()
        return q, k, v

    def logged_scalars(self) -> dict[str, torch.Tensor]:
        """What the training log records for this layer: γ, how much non-local context is used."""
        return {"gamma": self.gamma}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._query_key_value(x)
        if self.kernel == "fused":
            o = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        else:
            o = torch.matmul(torch.matmul(q, k.transpose(-2, -1)).softmax(dim=-1), v)
        o = rearrange(o, "b 1 (h w) c -> b c h w", h=x.shape[-2], w=x.shape[-1])
        return x + self.gamma * self.out(o)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, N, N_keys): row i is where query position i looks (rows sum to 1).

        Positions are flattened row-major (index = row·W + column); with pooling the key grid
        is (H/2)×(W/2). Does not advance spectral-norm power iteration.
        """
        with frozen_spectral_norm(self):
            q, k, _ = self._query_key_value(x)
        scores = torch.einsum("bnc,bmc->bnm", q[:, 0], k[:, 0])
        return scores.softmax(dim=-1)
