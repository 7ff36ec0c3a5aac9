"""ganforge: compose generative adversarial networks from YAML blueprints.

Importing ganforge is cheap: torch, components and plugins load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from .commands.api import LoadedGenerator

from .version import __version__
__all__ = ["__version__", "load"]


def load(target: str | Path, *, ema: bool = True, device: torch.device | str = "auto") -> LoadedGenerator:
    """A trained generator from a run folder, checkpoint file or ``.safetensors`` export, ready to sample.

    ``ganforge.load("runs/tiny").generate(16, classes=3, seed=0)`` gives 16 images as a float tensor
    (16, C, H, W) in [-1, 1]. ``ema``: the EMA copy when the run keeps one, else the live generator;
    ``device``: "auto", "cpu", "cuda", "cuda:N" or a ``torch.device``. See ``ganforge.commands.api.LoadedGenerator``.
    torch is imported here, on the first call, not by ``import ganforge``.
    """
    from .commands.api import load as load_generator

    return load_generator(target, ema=ema, device=device)
