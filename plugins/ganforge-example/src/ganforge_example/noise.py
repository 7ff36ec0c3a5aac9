"""Feedback from training to the network: instance noise that grows as D grows confident.

Instance noise (Sønderby et al. 2016; Arjovsky & Bottou 2017) adds Gaussian noise to every image D
sees, so real and generated distributions overlap and D cannot become arbitrarily sure. Here its
strength follows D's confidence on real images, in two parts paired by a requirement:

* ``logit_tracker`` (controller): after every training step it reads D's logits on the real
  images (ganforge's ``feedback``), keeps their running mean, and writes it into the modules
  that require it. Its state is saved in checkpoints, so a resumed run continues exactly.
* ``instance_noise`` (layer): ``requires = ("controller:logit_tracker",)``, so ganforge refuses a
  blueprint that lacks the tracker (the noise would silently stay off) and attaches the layer to it.

Nothing is kept at module level: the tracker holds its own state and the layer's value is a buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class InstanceNoise(nn.Module):
    """Adds N(0, σ²) noise to D's input in training mode, σ = min(max_std, strength · max(m, 0)).

    ``m`` (the buffer ``tracked_logit``) is the running mean of D's logit on real images, written by
    the ``logit_tracker`` controller this layer requires: while D is unsure (m <= 0) nothing is
    added, and the more confident it is on real images the more noise every image gets. The noise
    is drawn from torch's global generator (seeded and checkpointed by ganforge) at every training
    pass, whatever σ is, so the random stream does not depend on the feedback. Put it first in D
    so that real and generated images are treated alike. Identity in eval mode.

    Settings:
        strength: σ per unit of the tracked logit (>= 0).
        max_std: the largest σ (>= 0).
    """

    requires = ("controller:logit_tracker",)
    """The controller that sets ``tracked_logit``; ganforge refuses a blueprint without it."""

    def __init__(self, *, strength: float = 0.1, max_std: float = 0.5, in_channels: int) -> None:
        super().__init__()
        if strength < 0 or max_std < 0:
            raise ValueError(f"strength and max_std must be >= 0, got {strength} and {max_std}")
        self.in_channels = in_channels  # from ganforge: declaring it says this layer takes images
        self.strength = float(strength)
        self.max_std = float(max_std)
        self.register_buffer("tracked_logit", torch.tensor(0.0))

    @property
    def std(self) -> torch.Tensor:
        """The noise's current standard deviation σ."""
        return (self.strength * self.tracked_logit.clamp(min=0)).clamp(max=self.max_std)

    def logged_scalars(self) -> dict[str, torch.Tensor]:
        """σ, for the training log."""
        return {"std": self.std}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"instance_noise expects images (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        if not self.training:
            return x
        return x + self.std.to(x.dtype) * torch.randn_like(x)

    def extra_repr(self) -> str:
        return f"strength={self.strength}, max_std={self.max_std}"


class LogitTracker:
    """Running mean of D's logit on real images, written into the modules that require it.

    After each step: ``ema ← momentum · ema + (1 - momentum) · mean(real.logit)``; the published
    mean is ``ema / (1 - momentum^n)`` after ``n`` observations (Adam's bias correction, so the
    first steps are not pulled toward the arbitrary start 0). It is written into every attached
    module's ``tracked_logit`` buffer every ``interval`` steps (after steps interval-1,
    2·interval-1, ...). Under ``torch.distributed`` the batch means are averaged over the processes,
    so every process tracks the same value. The state is three python numbers, the last written mean
    among them (a resume mid-interval restores what the modules held), so resuming is exact. Reading
    the logit costs one host synchronisation per step (ganforge's ``ada`` controller avoids it).

    Settings:
        momentum: how much of the old mean each step keeps, in [0, 1).
        interval: steps between writes into the attached modules (>= 1).
    """

    def __init__(self, *, momentum: float = 0.9, interval: int = 1) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.momentum = float(momentum)
        self.interval = int(interval)
        self._ema = 0.0
        self._observed = 0
        self._published = 0.0  # what the modules hold: the mean at the last write
        self._modules: tuple[nn.Module, ...] = ()

    @property
    def mean(self) -> float:
        """The bias-corrected running mean (0 before the first observation)."""
        if self._observed == 0:
            return 0.0
        return self._ema / (1.0 - self.momentum ** self._observed)

    def attach(self, *, modules: Sequence[nn.Module]) -> None:
        """Keeps the modules whose ``tracked_logit`` it writes, and writes the last published mean into them."""
        modules = tuple(modules)
        for module in modules:
            if not isinstance(getattr(module, "tracked_logit", None), torch.Tensor):
                raise TypeError(f"the logit_tracker controller writes a `tracked_logit` buffer, which "
                                f"{type(module).__name__} does not have")
        self._modules = modules
        self._write()

    def feedback(self, *, step: int, real: Any) -> None:
        """After step ``step`` (0-based): fold in the mean of D's logits on real images (``real.logit``)."""
        batch_mean = real.logit.detach().float().mean()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(batch_mean)
            batch_mean = batch_mean / torch.distributed.get_world_size()
        batch_mean = float(batch_mean)
        self._ema = self.momentum * self._ema + (1.0 - self.momentum) * batch_mean
        self._observed += 1
        if (step + 1) % self.interval == 0:
            self._published = self.mean
            self._write()

    def _write(self) -> None:
        for module in self._modules:
            module.tracked_logit.fill_(self._published)

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self._ema, "observed": self._observed, "published": self._published}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._ema, self._observed = float(state["ema"]), int(state["observed"])
        self._published = float(state["published"])
        self._write()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(momentum={self.momentum}, interval={self.interval})"
