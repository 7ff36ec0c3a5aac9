"""Drawing images from a trained generator: latents, classes, truncation, batching."""

from __future__ import annotations

from typing import Iterator

import torch

from ..assembly import Network
from ..errors import GanforgeError
from .latents import (  # noqa: F401  (re-exported: callers import them from here)
    class_labels, column_classes, conditioning_labels, latent_batches, latents,
)

@torch.no_grad()
def generate(network: Network, *, n: int, latent_dim: int, num_classes: int, batch_size: int = 64,
             seed: int = 0, class_index: int | None = None, truncation: float | None = None,
             device: torch.device | str = "cpu", columns: int | None = None,
             truncation_psi: float | None = None, batches: range | None = None) -> Iterator[torch.Tensor]:
    """Batches of images in [-1, 1] (float32, on ``device``); the same seed gives the same images.

    Classes are uniform random (``class_index`` fixes one); ``columns`` gives one class per column
    of a grid that wide instead (``sample``'s grid). ``truncation`` cuts z; ``truncation_psi``
    pulls the mapped latent toward its average (StyleGAN's w-space truncation). ``batches`` keeps
    only those batch indices (one process's share): the others' latents are drawn but not run.
    """
    extra = w_truncation(network, truncation_psi)
    for index, (z, labels) in enumerate(latent_batches(n=n, latent_dim=latent_dim, num_classes=num_classes, batch_size=batch_size,
                                    seed=seed, class_index=class_index, truncation=truncation, device=device,
                                    columns=columns, latent=getattr(network, "latent", None))):
        if batches is not None and index >= batches.stop:
            break
        if batches is None or index in batches:
            yield network(z, labels, **extra).float()


def w_truncation(network: torch.nn.Module, psi: float | None) -> dict[str, float]:
    """The pass's ``truncation_psi`` input, refused for a generator with no mapped latent space to truncate in."""
    if psi is None:
        return {}
    if "truncation_psi" not in getattr(network, "consumes", frozenset()):
        raise GanforgeError(f"truncation psi {psi:g}: this generator has no mapped latent space (no context producer "
                            "reads truncation_psi, as style_mapping does); use --truncation to cut z instead")
    return {"truncation_psi": float(psi)}
