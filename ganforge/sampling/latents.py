"""Generator inputs: latents, classes and truncation, drawn batch by batch from one seed.

Both ``generation`` (sampling images) and ``standing_stats`` (batch-norm passes) draw their inputs
here, so neither imports the other for them.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ..components.latents.normal import NormalLatent
from ..errors import GanforgeError
from ..engine.samples import column_classes  # noqa: F401  (grid layout lives with the grids)

__all__ = ["class_labels", "column_classes", "conditioning_labels", "latent_batches", "latents"]


def latents(n: int, latent_dim: int, *, generator: torch.Generator, truncation: float | None = None,
            device: torch.device | str = "cpu", latent: Any = None) -> torch.Tensor:
    """z as the generator's latent component draws it for sampling (standard normal by default).

    ``truncation`` T redraws entries until |z| ≤ T (BigGAN's trick), for latents that offer it
    (a ``sample(n, *, generator, truncation)`` method); others are refused with ``truncation``.
    """
    latent = NormalLatent(latent_dim=latent_dim) if latent is None else latent
    if callable(getattr(latent, "sample", None)):
        z = latent.sample(n, generator=generator, truncation=truncation)
    elif truncation is not None:
        raise GanforgeError(f"truncation {truncation:g}: the generator's latent ({latent!r}) has no truncation")
    else:
        z = latent.draw(n, generator=generator, device="cpu")["z"]
    return z.to(device)


def class_labels(n: int, num_classes: int, *, class_index: int | None, generator: torch.Generator,
                 device: torch.device | str = "cpu") -> torch.Tensor | None:
    """``class_index`` for every image, uniform random classes, or None for an unconditional model."""
    if num_classes == 0:
        return None
    if class_index is not None:
        return torch.full((n,), class_index, dtype=torch.long, device=device)
    return torch.randint(0, num_classes, (n,), generator=generator).to(device)


def latent_batches(*, n: int, latent_dim: int, num_classes: int, batch_size: int = 64, seed: int = 0,
                   class_index: int | None = None, truncation: float | None = None,
                   device: torch.device | str = "cpu", columns: int | None = None,
                   latent: Any = None) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """(z, labels) batches of ``n`` inputs in all; the same seed gives the same inputs.

    ``columns`` lays the classes out for a grid that wide (one class per column, see
    ``column_classes``) instead of drawing them at random; the latents stay the same. ``latent``:
    the generator's latent component (``Network.latent``), standard normal when None.
    """
    rng = torch.Generator().manual_seed(seed)
    done = 0
    while done < n:
        size = min(batch_size, n - done)
        z = latents(size, latent_dim, generator=rng, truncation=truncation, device=device, latent=latent)
        labels = class_labels(size, num_classes, class_index=class_index, generator=rng, device=device)
        if labels is not None and class_index is None and columns is not None:
            labels = column_classes(size, num_classes, columns, start=done, device=device)
        yield z, labels
        done += size


def conditioning_labels(*, n: int, latent_dim: int, num_classes: int, batch_size: int = 64,
                        seed: int = 0) -> torch.Tensor | None:
    """The classes ``generate`` conditions its ``n`` images on, given the same arguments (None: unconditional)."""
    if num_classes == 0:
        return None
    return torch.cat([labels for _, labels in latent_batches(n=n, latent_dim=latent_dim, num_classes=num_classes,
                                                             batch_size=batch_size, seed=seed)])
