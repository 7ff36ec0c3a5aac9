"""BigGAN's standing statistics: batch-norm statistics recomputed for the weights that sample.

Running averages mix batches of many past weights (with SAGAN-128's momentum 0.001, about a
thousand steps' worth), and an EMA generator never runs a training pass of its own, so the
statistics it holds belong to the live weights. BigGAN-PyTorch (``accumulate_standing_stats``,
utils.py:1108-1117 at 9845943) instead averages the statistics of N fresh training-mode passes of
the generator being sampled, drawing z from N(0, 1) with ``z.normal_()`` (line 1113): untruncated,
whatever variance it then samples at. ``ganforge sample --truncation`` therefore draws the standing
passes' latents untruncated too; ``truncation`` here is for callers who want otherwise.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .latents import latent_batches
from ..assembly import frozen_normalisation
from ..contracts import batch_statistics

__all__ = ["STANDING_BATCH_SIZE", "seeded_standing_statistics", "standing_statistics"]

STANDING_BATCH_SIZE = 64  # images per pass; BigGAN-PyTorch uses its sampling batch, ganforge's is 64


@torch.no_grad()
def standing_statistics(network: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]]) -> int:
    """Set every batch-statistics normalisation's running statistics to their plain average over ``batches``; returns the pass count.

    Each batch norm is reset and given momentum None (torch's cumulative average: the mean of the
    batch means and of the unbiased batch variances). The passes run in training mode, without
    gradients and with spectral-norm u/v frozen, so nothing but the statistics changes. The momenta
    are restored afterwards and the network is left in eval mode, ready to sample.
    """
    norms = [m for m in network.modules() if batch_statistics(m)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    passes = 0
    network.train()
    try:
        with frozen_normalisation(network):
            for z, labels in batches:
                network(z, labels)
                passes += 1
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        network.eval()
    return passes


def seeded_standing_statistics(network: nn.Module, *, passes: int, latent_dim: int, num_classes: int,
                               sample_seed: int, truncation: float | None = None,
                               batch_size: int = STANDING_BATCH_SIZE, device: torch.device | str = "cpu") -> str:
    """Standing statistics over ``passes`` seeded batches of uniform classes; returns which statistics, in words.

    The latents come from seed ``sample_seed + 1``, so they are not the sampled images' own. With
    ``passes`` 0 nothing changes and the answer is "running statistics".
    """
    if passes == 0:
        return "running statistics"
    seed = sample_seed + 1
    batches = latent_batches(n=passes * batch_size, latent_dim=latent_dim, num_classes=num_classes,
                             batch_size=batch_size, seed=seed, truncation=truncation, device=device,
                             latent=getattr(network, "latent", None))
    standing_statistics(network, batches)
    classes = ", uniform classes" if num_classes else ""
    cut = f", truncation {truncation:g}" if truncation else ""
    return (f"standing statistics of {passes} training-mode passes of {batch_size} images "
            f"(latent seed {seed}{classes}{cut})")
