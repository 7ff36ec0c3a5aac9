"""LeCam regularisation (Tseng et al., CVPR 2021): keep D's outputs near the moving averages of the other side's.

Read in google/lecam-gan (HEAD): ``biggan_cifar/losses.py:20-23`` (the penalty),
``third_party/utils.py:637-661`` (``ema_losses``: init 1000, decay 0.9, decay 0 before ``start_itr``),
``biggan_cifar/train.py:28`` (``start_itr=1000``), ``third_party/train_fns.py:55-61`` (the averages are
updated from every D micro-batch, by the hinge loss, before the penalty; the penalty applies once
``itr > start_itr``, times ``--LC``), ``biggan_cifar/scripts/lc-biggan-cifar10.sh`` (``--LC 0.3``).
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
import torch
import torch.nn.functional as F

from ganforge.records import DiscriminatorOutput
from ganforge.registry import register

__all__ = ["LeCam"]


@register("regularizer", "lecam")
class LeCam:
    """weight · (E[relu(D(x) − α_F)²] + E[relu(α_R − D(G(z)))²]), α the moving means of D's outputs.

    α_R and α_F average the mean logit on real and on generated images of every D micro-batch
    (``decay``; plain copies before ``start`` steps), updated before the penalty as the reference's
    hinge loss does. The penalty is zero until the reference's ``itr > start_itr``; its ``itr``
    counts steps taken before this one, from 0 (``third_party/run_train.py:99``, incremented after
    the step at ``:232``), as ganforge's ``step`` does.
    The averages are state: saved in checkpoints, resumed exactly. With ``every: N`` they are
    updated only on the steps it runs (the reference updates them every step).
    """

    def __init__(self, *, weight: Annotated[float, pydantic.Field(ge=0)] = 0.3,
                 decay: Annotated[float, pydantic.Field(ge=0, lt=1)] = 0.9,
                 start: Annotated[int, pydantic.Field(ge=0)] = 1000, initial: float = 1000.0) -> None:
        self.weight, self.decay, self.start = weight, decay, start
        self.real_mean = self.fake_mean = float(initial)

    def __call__(self, *, step: int, real_outputs: DiscriminatorOutput,
                 fake_outputs: DiscriminatorOutput) -> torch.Tensor:
        real, fake = real_outputs.logit, fake_outputs.logit
        decay = self.decay if step >= self.start else 0.0  # the reference's `itr < start_itr`: no decay
        self.fake_mean = self.fake_mean * decay + float(fake.detach().mean()) * (1 - decay)
        self.real_mean = self.real_mean * decay + float(real.detach().mean()) * (1 - decay)
        if step <= self.start:
            return real.sum() * 0.0
        penalty = F.relu(real - self.fake_mean).pow(2).mean() + F.relu(self.real_mean - fake).pow(2).mean()
        return self.weight * penalty

    def state_dict(self) -> dict[str, Any]:
        return {"real_mean": self.real_mean, "fake_mean": self.fake_mean}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.real_mean, self.fake_mean = float(state["real_mean"]), float(state["fake_mean"])

    def __repr__(self) -> str:
        return f"LeCam(weight={self.weight!r}, decay={self.decay!r}, start={self.start!r})"
