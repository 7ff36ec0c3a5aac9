"""The Python API: a trained generator from a run, checkpoint or export, ready to sample.

    import ganforge
    g = ganforge.load("runs/tiny")                # the EMA generator when the run keeps one
    g = ganforge.load("hf://ORG/NAME")            # an export on the Hugging Face Hub
    images = g.generate(16, classes=3, seed=0)    # (16, C, H, W) float32 in [-1, 1], on g.device

Reached through ``ganforge.load``, which imports this module (and torch) only when called.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..assembly import Network
from ..blueprint.schema import Blueprint
from ..errors import GanforgeError
from ..sampling.generation import latent_batches, w_truncation

__all__ = ["LoadedGenerator", "load"]


@dataclass
class LoadedGenerator:
    """A restored generator in eval mode and what sampling it needs.

    ``network`` is the ``torch.nn.Module`` itself (``network(z, labels)``: z of shape
    (N, latent_dim), labels (N,) long or None); ``blueprint`` the resolved blueprint it was built
    from; ``uses_ema`` whether it is the EMA copy; ``source`` the checkpoint or export file read.
    """

    network: Network
    latent_dim: int
    num_classes: int
    resolution: int
    channels: int
    blueprint: Blueprint
    device: torch.device
    step: int
    uses_ema: bool
    source: Path

    def __repr__(self) -> str:
        kind = "EMA" if self.uses_ema else "raw"
        classes = f"{self.num_classes} classes" if self.num_classes else "unconditional"
        return (f"LoadedGenerator({self.blueprint.name!r}, {kind}, step {self.step}, latent_dim {self.latent_dim}, "
                f"{classes}, {self.channels}×{self.resolution}×{self.resolution}, device {self.device}, "
                f"from {str(self.source)!r})")

    @torch.no_grad()
    def generate(self, n: int, *, classes: int | Sequence[int] | torch.Tensor | None = None,
                 truncation: float | None = None, seed: int = 0, batch_size: int = 64,
                 truncation_psi: float | None = None) -> torch.Tensor:
        """``n`` images as a float32 tensor (n, channels, resolution, resolution) in [-1, 1], on ``device``.

        ``classes``: None for uniformly random classes (or an unconditional model), an int for every
        image, or n class indices, one per image. ``truncation`` T redraws latent entries with
        |z| > T (BigGAN's truncation trick); ``truncation_psi`` pulls a mapped latent toward its average
        (StyleGAN's w-space truncation, for generators with a mapping network). The same ``seed`` (and ``batch_size``: latents are drawn per
        batch) gives the same images; with the default batch size they are the ones ``ganforge sample
        --seed`` draws (with ``--class`` for an int). A list of classes uses the latents an int would.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise GanforgeError(f"generate: n must be a positive int, got {n!r}")
        if truncation is not None and not truncation > 0:
            raise GanforgeError(f"generate: truncation must be > 0, got {truncation!r}")
        extra = w_truncation(self.network, truncation_psi)
        per_image = self._labels(n, classes)
        class_index = classes if isinstance(classes, int) else (0 if per_image is not None else None)
        images, done = [], 0
        for z, labels in latent_batches(n=n, latent_dim=self.latent_dim, num_classes=self.num_classes,
                                        batch_size=batch_size, seed=seed, class_index=class_index,
                                        truncation=truncation, device=self.device,
                                        latent=getattr(self.network, "latent", None)):
            if per_image is not None:
                labels = per_image[done:done + z.shape[0]]
            images.append(self.network(z, labels, **extra).float())
            done += z.shape[0]
        return torch.cat(images)

    def standing_statistics(self, passes: int, *, seed: int = 0, truncation: float | None = None) -> str:
        """Recompute batch-norm statistics over ``passes`` training-mode passes of 64 generated images.

        BigGAN's standing statistics, as ``ganforge sample --standing-stats`` (latents from ``seed`` + 1);
        changes ``network`` in place and returns which statistics it now holds, in words.
        """
        from ..sampling.standing_stats import seeded_standing_statistics

        return seeded_standing_statistics(self.network, passes=passes, latent_dim=self.latent_dim,
                                          num_classes=self.num_classes, sample_seed=seed, truncation=truncation,
                                          device=self.device)

    def _labels(self, n: int, classes: int | Sequence[int] | torch.Tensor | None) -> torch.Tensor | None:
        """Per-image labels for a sequence of classes; None otherwise (an int is checked here too)."""
        if classes is None:
            return None
        if self.num_classes == 0:
            raise GanforgeError("generate: classes given, but the model is unconditional")
        if isinstance(classes, bool):
            raise GanforgeError(f"generate: classes must be an int or {n} ints, got {classes!r}")
        if isinstance(classes, int):
            labels = torch.tensor([classes])
        else:
            try:
                labels = torch.as_tensor(classes).reshape(-1)
            except (TypeError, ValueError, RuntimeError):
                raise GanforgeError(f"generate: classes must be an int or {n} ints, got {classes!r}") from None
            if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
                raise GanforgeError(f"generate: classes must be integers, got dtype {labels.dtype}")
            if labels.numel() != n:
                raise GanforgeError(f"generate: {labels.numel()} classes given for {n} images")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise GanforgeError(f"generate: classes must lie in 0..{self.num_classes - 1}, got {classes!r}")
        return None if isinstance(classes, int) else labels.to(device=self.device, dtype=torch.long)


def resolve_device(device: torch.device | str) -> torch.device:
    if isinstance(device, str) and device in ("auto", "cuda"):
        from ..engine.distributed import choose_device

        return choose_device(device)
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise GanforgeError(f"device {device!r}: expected 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device") from None


def _warn(message: str) -> None:
    warnings.warn(message.removeprefix("warning: "), stacklevel=4)


def load(target: str | Path, *, ema: bool = True, device: torch.device | str = "auto") -> LoadedGenerator:
    """The generator of ``target`` (run folder, checkpoint file, ``.safetensors`` export, or an export on the
    Hugging Face Hub: ``"hf://ORG/NAME[@REVISION][/FILE.safetensors]"``, default file ``model.safetensors``,
    read from the Hub cache or downloaded to it; only the cache with ``HF_HUB_OFFLINE=1``), ready to sample.

    ``ema``: the EMA copy when the run keeps one (its spectral-norm u/v converged for its own
    weights); False for the live generator. ``device``: "auto" (CUDA when available), "cpu", "cuda",
    "cuda:N" or a ``torch.device``. Skipped damaged checkpoints are reported with ``warnings.warn``;
    bad input raises ``ganforge.errors.GanforgeError``.
    """
    from ..engine.restore import restore

    dev = resolve_device(device)
    run = restore(target, device=dev, prefer_ema=ema, warn=_warn)
    bp = run.loaded.blueprint
    return LoadedGenerator(network=run.generator.eval(), latent_dim=bp.generator.latent_dim,
                           num_classes=bp.data.num_classes, resolution=bp.data.resolution,
                           channels=bp.data.channels, blueprint=bp, device=dev, step=run.step,
                           uses_ema=run.uses_ema, source=run.checkpoint)
