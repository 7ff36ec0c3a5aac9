"""Regions that must run in fp32 even when the training step runs under autocast."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

__all__ = ["autocast_enabled", "without_autocast"]


def autocast_enabled(tensor: torch.Tensor) -> bool:
    """Whether autocast is on for ``tensor``'s device (never on meta or other devices)."""
    kind = tensor.device.type
    return kind in ("cuda", "cpu") and torch.is_autocast_enabled(kind)


def without_autocast(tensor: torch.Tensor) -> ContextManager[object]:
    """Turn autocast off for ``tensor``'s device while inside; a no-op where it is off.

    For small differences of large sums (σ of a weight, a batch's spread), which bf16 matrix
    products would round away.
    """
    if autocast_enabled(tensor):
        return torch.autocast(tensor.device.type, enabled=False)
    return contextlib.nullcontext()
