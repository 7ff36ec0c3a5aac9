"""BigGAN's generator pieces: the shared class embedding, the hierarchical latent and the up-block.

Written from ajbrock/BigGAN-PyTorch (``BigGAN.py``, ``layers.py``). The class embedding and the z
chunks reach the blocks as the generator's conditioning context (``context`` kind), not as feature
planes: ``shared_embedding`` provides ``class_embedding``, ``hierarchical_z`` provides one
``z_chunk`` per consuming block and the stem's ``input``, and every ``biggan_up`` block conditions
its batch norms on [class_embedding, z_chunk].
"""

from __future__ import annotations

from typing import Annotated

import pydantic
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.components.blocks.resblocks import _conv
from ganforge.components.layers.norms import Eps, Momentum
from ganforge.components.layers.spectral_norm import (
    Channels,
    SNEps,
    SNIterations,
    apply_spectral_norm,
)
from ganforge.registry import register

__all__ = ["BigGANUpBlock", "HierarchicalZ", "LinearConditionalBatchNorm2d", "SharedEmbedding"]


@register("context", "shared_embedding")
class SharedEmbedding(nn.Module):
    """BigGAN's shared class embedding: one table, looked up once per pass, read by every block.

    A plain ``nn.Embedding`` (no spectral norm: BigGAN.py:132-134, "applying SN to G's embedding
    seems to randomly cripple G"). Tagged ``no_orthogonal``: BigGAN-PyTorch leaves it out of
    orthogonal regularisation (train_fns.py:78-80, ``blacklist=[param for param in
    G.shared.parameters()]``).
    """

    provides = {"class_embedding": "shared"}
    parameter_tags = frozenset({"no_orthogonal"})

    def __init__(self, *, num_classes: int, dim: Channels = 128) -> None:
        super().__init__()
        if num_classes <= 0:
            raise ValueError("shared_embedding embeds class labels, so it needs a class-conditional model "
                             f"(num_classes > 0), got num_classes={num_classes}")
        self.embedding = nn.Embedding(num_classes, dim)

    def forward(self, *, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if labels is None:
            raise ValueError("shared_embedding needs class labels; got labels=None")
        return {"class_embedding": self.embedding(labels)}  # (B, dim)


@register("context", "hierarchical_z")
class HierarchicalZ(nn.Module):
    """BigGAN's hierarchical latent: z cut into equal chunks, the first for the stem, one per block.

    With n blocks consuming ``z_chunk``, z (B, latent_dim) is split into n + 1 chunks of
    latent_dim / (n + 1) (BigGAN.py:111-112 ``num_slots = len(in_channels) + 1``,
    ``z_chunk_size = dim_z // num_slots``; BigGAN.py:233-235 ``zs = torch.split(z,
    z_chunk_size, 1)``, ``zs[0]`` to the first linear, ``zs[1:]`` to the blocks in order).
    BigGAN-PyTorch silently shrinks dim_z to a multiple of the slot count (BigGAN.py:114); here
    a latent_dim that does not split evenly is refused, so the blueprint's latent_dim is the one
    used. No parameters.
    """

    provides = {"z_chunk": "per_layer", "input": "shared"}

    def __init__(self, *, latent_dim: int, consumers: dict[str, int]) -> None:
        super().__init__()
        n = int(consumers.get("z_chunk", 0))
        slots = n + 1
        if latent_dim % slots != 0:
            lower = latent_dim // slots * slots
            raise ValueError(
                f"hierarchical_z splits z into {slots} equal chunks (one for the stem, one for each of the {n} "
                f"blocks reading z_chunk), but latent_dim {latent_dim} is not divisible by {slots}; set "
                f"generator.latent_dim to a multiple of {slots} (e.g. {lower or slots} or {lower + slots})"
            )
        self.latent_dim = latent_dim
        self.num_chunks = n
        self.chunk_size = latent_dim // slots

    def forward(self, *, z: torch.Tensor) -> dict[str, torch.Tensor]:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"hierarchical_z expects z of shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        first, *rest = torch.split(z, self.chunk_size, dim=1)
        chunks = torch.stack(rest, dim=1) if rest else z.new_zeros(z.shape[0], 0, self.chunk_size)
        return {"input": first, "z_chunk": chunks}  # (B, chunk), (B, n, chunk)


class LinearConditionalBatchNorm2d(nn.Module):
    """BigGAN's ``ccbn``: batch norm whose gain and bias are linear in a conditioning vector y.

    out = BN(x)·(1 + W_g·y) + W_b·y, per channel (layers.py:306-325), W_g and W_b bias-free and
    spectrally normalised like G's other linears (BigGAN.py:125-127 ``which_linear = SNLinear``,
    135-136 ``bn_linear = partial(which_linear, bias=False)`` with a shared embedding). The batch
    norm itself has no affine parameters (an ``nn.BatchNorm2d``, so standing statistics and SyncBN
    treat it as batch statistics). With no conditioning (cond_dim 0) it learns a plain per-channel
    gain (from 1) and bias (from 0) instead, like BigGAN's unconditional ``bn``.
    """

    def __init__(self, channels: int, cond_dim: int, *, eps: float, momentum: float, sn: dict) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        self.bn = nn.BatchNorm2d(channels, eps=eps, momentum=momentum, affine=cond_dim == 0)
        if cond_dim > 0:
            self.gain = apply_spectral_norm(nn.Linear(cond_dim, channels, bias=False), **sn)
            self.bias = apply_spectral_norm(nn.Linear(cond_dim, channels, bias=False), **sn)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        out = self.bn(x)
        if self.cond_dim == 0:
            return out
        gain = 1 + self.gain(y)[:, :, None, None]
        bias = self.bias(y)[:, :, None, None]
        return out * gain + bias


@register("block", "biggan_up")
class BigGANUpBlock(nn.Module):
    """BigGAN's generator block (``GBlock``, layers.py:375-408), conditioned through the context.

    CBN→ReLU→2× nearest up→3×3 conv→CBN→ReLU→3×3 conv, plus a shortcut of 2× up→1×1 conv. The
    shortcut is always a 1×1 conv, also when channels do not change, because the block always
    up-samples (layers.py:388 ``learnable_sc = in_channels != out_channels or upsample``; BigGAN.py:165
    up-samples in every block with ``F.interpolate(scale_factor=2)``, nearest). Both batch norms
    are ``LinearConditionalBatchNorm2d`` on y = [class_embedding, z_chunk], in that order
    (BigGAN.py:235 ``torch.cat([y, item], 1)``), so a 128² BigGAN block reads 128 + 20 = 148 values.
    ``channels`` 0 keeps ``in_channels``. ``eps`` 1e-5 is BigGAN-PyTorch's G BN_eps (BigGAN.py:62,
    utils.py:298, scripts/launch_BigGAN_bs256x8.sh:8); ``momentum`` 0.1 is the one ccbn's batch norm
    uses (layers.py:316-317).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: Annotated[int, pydantic.Field(ge=0)] = 0,
        z_chunk_dim: Annotated[int, pydantic.Field(ge=0)] = 0,
        class_embedding_dim: Annotated[int, pydantic.Field(ge=0)] = 0,
        eps: Eps = 1e-5,
        momentum: Momentum = 0.1,
        spectral_norm: bool = True,
        sn_eps: SNEps = 1e-12,
        sn_iterations: SNIterations = 1,
    ) -> None:
        super().__init__()
        out = channels or in_channels
        sn = dict(spectral_norm=spectral_norm, sn_eps=sn_eps, sn_iterations=sn_iterations)
        self.z_chunk_dim = z_chunk_dim
        self.class_embedding_dim = class_embedding_dim
        cond = z_chunk_dim + class_embedding_dim
        self.bn1 = LinearConditionalBatchNorm2d(in_channels, cond, eps=eps, momentum=momentum, sn=sn)
        self.conv1 = _conv(in_channels, out, 3, sn)
        self.bn2 = LinearConditionalBatchNorm2d(out, cond, eps=eps, momentum=momentum, sn=sn)
        self.conv2 = _conv(out, out, 3, sn)
        self.shortcut = _conv(in_channels, out, 1, sn)

    def _condition(self, z_chunk: torch.Tensor | None, class_embedding: torch.Tensor | None) -> torch.Tensor | None:
        parts = []
        for name, value, dim in (("class_embedding", class_embedding, self.class_embedding_dim),
                                 ("z_chunk", z_chunk, self.z_chunk_dim)):
            if dim == 0 and value is None:
                continue
            if value is None:
                raise ValueError(f"biggan_up conditions on {name} ({dim} values per image) but received none; "
                                 f"add a context producer that provides {name!r} to generator.context")
            if dim == 0 or value.shape[-1] != dim:
                raise ValueError(f"biggan_up expects {name} of {dim} values per image "
                                 f"(its {name}_dim), got shape {tuple(value.shape)}")
            parts.append(value)
        return torch.cat(parts, dim=1) if parts else None

    def forward(
        self,
        x: torch.Tensor,
        *,
        z_chunk: torch.Tensor | None = None,
        class_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        y = self._condition(z_chunk, class_embedding)  # (B, class_embedding_dim + z_chunk_dim) or None
        h = F.relu(self.bn1(x, y))
        h = self.conv1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.conv2(F.relu(self.bn2(h, y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))
