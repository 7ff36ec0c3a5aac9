"""StyleGAN2's mapping network as a context producer (``context`` kind): z → w → per-layer styles.

References are NVlabs/stylegan2-ada-pytorch (commit d72cc7d): ``training/networks.py`` for the
network, ``training/loss.py`` for style mixing. The producer gives every consumer of ``style``
its own w (``styles[:, i]``), so mixing and truncation happen here, in w space, not in z.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganforge.components.layers.full_precision import without_autocast
from ganforge.registry import register

__all__ = ["EqualizedLinear", "StyleMapping"]

PositiveInt = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0, le=1)]


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / RMS(x) over features (``training/networks.py:21-22``)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class EqualizedLinear(nn.Module):
    """Fully connected layer with an equalised learning rate (``training/networks.py:89-118``).

    The weight is stored as randn / lr_multiplier and scaled at run time by
    lr_multiplier / sqrt(fan_in), the bias by lr_multiplier (``:100-111``): the layer starts as a
    unit-variance init but every optimiser step moves it lr_multiplier times as far. ``lrelu`` is
    bias_act's: leaky ReLU with slope 0.2 times sqrt(2) (``torch_utils/ops/bias_act.py:26``).
    It is not an ``nn.Linear``, so init schemes leave its scaled weights alone.
    """

    def __init__(self, *, in_features: int, out_features: int, lr_multiplier: float = 1.0, lrelu: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.lrelu = lrelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight.to(x.dtype) * self.weight_gain, self.bias.to(x.dtype) * self.bias_gain)
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.lrelu else x

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"in_features={in_features}, out_features={out_features}, lrelu={self.lrelu}"


@register("context", "style_mapping")
class StyleMapping(nn.Module):
    """StyleGAN2's mapping network (``training/networks.py:174-249``): provides ``style`` and ``w``.

    z is normalised to unit second moment, concatenated with a normalised embedding of the class
    (a linear layer on the one-hot label, lr multiplier 1, when the data has classes) and mapped by
    ``num_layers`` equalised-lr linear layers with lrelu and ``lr_multiplier`` (:195-209, :218-229). In
    training mode ``w_avg`` follows the batch mean of w, w_avg ← lerp(mean w, w_avg, w_avg_beta)
    (:232-234). ``style`` is w broadcast to every consumer (:237-239); ``w`` the unmixed w.

    Style mixing (``training/loss.py:41-45``): given a second latent ``mix_z`` and ``mix_cutoff``
    (one number u in [0, 1) per batch; 1 or more: no mixing), the consumers from
    c = 1 + ⌊u·(n−1)⌋ on take their style from ``mix_z`` (same labels, w_avg not updated by it); the
    reference draws c uniformly in [1, n) once per batch. Truncation at sampling
    (``training/networks.py:241-248``): every style (those before ``truncation_cutoff`` when set)
    and ``w`` move to w_avg.lerp(w, truncation_psi).

    Its parameters are tagged ``mapping``. The learning-rate multiplier is already built in (the
    reference's way), so a blueprint should not also give the ``mapping`` group one.
    """

    provides: ClassVar[dict[str, str]] = {"style": "per_layer", "w": "shared"}
    parameter_tags = frozenset({"mapping"})

    def __init__(
        self,
        *,
        latent_dim: int,
        num_classes: int = 0,
        consumers: dict[str, int],
        w_dim: PositiveInt = 512,
        num_layers: PositiveInt = 8,
        lr_multiplier: Annotated[float, Field(gt=0)] = 0.01,
        w_avg_beta: Fraction = 0.995,
        truncation_cutoff: PositiveInt | None = None,
    ) -> None:
        super().__init__()
        self.num_styles = int(consumers.get("style", 0))
        self.num_classes = num_classes
        self.w_avg_beta = w_avg_beta
        self.truncation_cutoff = truncation_cutoff
        embed = w_dim if num_classes > 0 else 0  # training/networks.py:195-198
        self.embed = EqualizedLinear(in_features=num_classes, out_features=embed) if num_classes > 0 else None
        widths = [latent_dim + embed] + [w_dim] * num_layers  # :201
        self.layers = nn.ModuleList(
            EqualizedLinear(in_features=i, out_features=o, lr_multiplier=lr_multiplier, lrelu=True)
            for i, o in pairwise(widths)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))  # :211-212

    def map(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """w (B, w_dim) of latents z (B, latent_dim) and class labels (B,), in fp32 (autocast off)."""
        with without_autocast(z):
            x = normalize_2nd_moment(z.float())
            if self.embed is not None:
                if labels is None:
                    raise ValueError(f"style_mapping embeds one of {self.num_classes} classes and needs labels; "
                                     "got None")
                y = normalize_2nd_moment(self.embed(F.one_hot(labels.long(), self.num_classes).float()))
                x = torch.cat([x, y], dim=1)
            for layer in self.layers:
                x = layer(x)
        return x

    def forward(self, *, z: torch.Tensor, labels: torch.Tensor | None = None, mix_z: torch.Tensor | None = None,
                mix_cutoff: torch.Tensor | None = None, truncation_psi: float | None = None) -> dict[str, torch.Tensor]:
        w = self.map(z, labels)  # (B, w_dim)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        styles, w = self.broadcast(w, self.num_styles, labels=labels, mix_z=mix_z, mix_cutoff=mix_cutoff,
                                   truncation_psi=truncation_psi)
        return {"style": styles, "w": w}

    def broadcast(self, w: torch.Tensor, n: int, *, labels: torch.Tensor | None = None,
                  mix_z: torch.Tensor | None = None, mix_cutoff: torch.Tensor | None = None,
                  truncation_psi: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """w (B, w_dim) repeated to ``n`` styles (B, n, w_dim), mixed and truncated over those ``n``; and w
        (truncated). The reference's ``ws`` for ``n`` = its num_ws (``networks.py:237-248``, ``loss.py:41-45``)."""
        styles = w.unsqueeze(1).repeat(1, n, 1)  # (B, n, w_dim)
        if mix_z is not None and mix_cutoff is not None and n > 1:
            # one cutoff for the batch, applied without a host sync: layers >= c take the mixed style
            u = mix_cutoff.reshape(-1)[0].to(w.dtype)
            cutoff = (1 + torch.floor(u * (n - 1))).clamp(max=n)
            mixed = self.map(mix_z, labels).unsqueeze(1)  # (B, 1, w_dim)
            later = (torch.arange(n, device=w.device) >= cutoff).view(1, n, 1)
            styles = torch.where(later, mixed, styles)
        if truncation_psi is not None and truncation_psi != 1:
            w = self.w_avg.lerp(w, truncation_psi)
            cut = n if self.truncation_cutoff is None else min(self.truncation_cutoff, n)
            styles = torch.cat([self.w_avg.lerp(styles[:, :cut], truncation_psi), styles[:, cut:]], dim=1)
        return styles, w
