"""ContraGAN's discriminator head: a logit, a projected image embedding and the class proxy.

ContraGAN (Kang & Park 2020) conditions D through a contrastive loss (``contra``, in
``losses/contrastive.py``) instead of a projection term: D maps its pooled features to an
embedding, and a learned class embedding gives each image the proxy of its class. This head
returns both, as extras of D's output, so the loss reads them from the record and nothing is
kept anywhere else.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganforge.components.blocks.resblocks import LeakySlope
from ganforge.components.layers.spectral_norm import Channels, SNEps, SNIterations, apply_spectral_norm
from ganforge.registry import register

__all__ = ["ContraOutput"]

Classes = Annotated[int, Field(ge=0)]


@register("head", "contra_output")
class ContraOutput(nn.Module):
    """ContraGAN discriminator head (StudioGAN ``d_cond_mtd: 2C``): logit, embedding and class proxy.

    As PyTorch-StudioGAN ``src/models/big_resnet.py``: pooled features h = Σ ReLU(x) over
    positions (:359-360) go to ``linear1`` with bias for the logit (:312, :363), to ``linear2``,
    a linear *with* bias to ``embed_dim`` values, for the embedding (:324, :389), and the class
    embedding table (``embedding``, :325) looked up by label gives the proxy (:390); with
    ``normalize`` both are L2-normalised (:391-393, ``normalize_d_embed``). All three are
    spectrally normalised when D is (``MODULES.d_linear`` / ``d_embedding``, src/config.py:447-451).
    Returns ``{"logit": (B, 1), "embedding": (B, embed_dim), "proxy": (B, embed_dim)}``; the
    proxy is an extra (and not read by the loss from this module) because losses see D's outputs
    only. Pair it with the ``contra`` loss.
    """

    outputs = ("embedding", "proxy")

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: Classes,
        embed_dim: Channels = 512,
        normalize: bool = True,
        leaky_slope: LeakySlope = 0.0,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("contra_output embeds each image's class as its proxy and needs class-labelled data "
                             f"(num_classes >= 1), got num_classes={num_classes}")
        sn = {"spectral_norm": spectral_norm, "sn_eps": sn_eps, "sn_iterations": sn_iterations}
        self.linear = apply_spectral_norm(nn.Linear(in_channels, 1), **sn)
        self.projection = apply_spectral_norm(nn.Linear(in_channels, embed_dim), **sn)
        self.class_embedding = apply_spectral_norm(nn.Embedding(num_classes, embed_dim), **sn)
        self.num_classes = num_classes
        self.normalize = normalize
        self.leaky_slope = leaky_slope

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if labels is None:
            raise ValueError(f"contra_output looks up the proxy of each image's class ({self.num_classes} classes) "
                             "and needs labels; got None")
        h = (F.leaky_relu(x, self.leaky_slope) if self.leaky_slope else F.relu(x)).sum(dim=(2, 3))  # (B, C)
        embedding = self.projection(h)  # (B, embed_dim)
        proxy = self.class_embedding(labels)  # (B, embed_dim)
        if self.normalize:
            embedding, proxy = F.normalize(embedding, dim=1), F.normalize(proxy, dim=1)
        return {"logit": self.linear(h), "embedding": embedding, "proxy": proxy}
