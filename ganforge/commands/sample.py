"""``ganforge sample``: a grid (and single images) drawn from a run or checkpoint alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..engine.run_dir import RunDir
from ..sampling.generation import generate

if TYPE_CHECKING:
    from ..engine.restore import RestoredRun
    from ..registry import Registry


@dataclass
class SampleGrid:
    """What ``sample_grid`` wrote: the grid PNG, any single-image PNGs, and how they were drawn."""

    run: RestoredRun
    grid: Path
    count: int
    statistics: str  # which batch-norm statistics the generator used
    individual: list[Path] = field(default_factory=list)


def sample_grid(target: str | Path, *, count: int = 64, class_index: int | None = None,
                truncation: float | None = None, seed: int = 0, out: str | Path | None = None,
                individual: str | Path | None = None, prefer_ema: bool = True, standing_stats: int = 0,
                device: str = "auto", registry: Registry | None = None,
                truncation_psi: float | None = None) -> SampleGrid:
    """``ganforge sample``: a PNG grid of ``count`` images from a run or checkpoint alone (no training data).

    With classes (and no ``class_index``) each grid column is one class; rows are always full.
    ``out`` defaults to ``RUN/samples/sample.png``; ``individual`` also writes each image as its own PNG.
    """
    from ..engine.distributed import choose_device
    from ..engine.restore import restore
    from ..engine.samples import grid_columns, save_grid, save_images
    from ..errors import GanforgeError
    from ..sampling.standing_stats import seeded_standing_statistics

    dev = choose_device(device)
    run = restore(target, device=dev, prefer_ema=prefer_ema, registry=registry)
    bp = run.loaded.blueprint
    if class_index is not None and class_index >= max(bp.data.num_classes, 0):
        raise GanforgeError(f"--class {class_index}: the model has {bp.data.num_classes} classes"
                            + (" (it is unconditional)" if bp.data.num_classes == 0 else ""))
    # Untruncated latents, whatever --truncation is: as BigGAN-PyTorch (utils.py:1113, z.normal_()).
    statistics = seeded_standing_statistics(run.generator, passes=standing_stats, sample_seed=seed,
                                            latent_dim=bp.generator.latent_dim, num_classes=bp.data.num_classes,
                                            device=dev)
    # full rows only; with classes (and no --class) each column is one class
    columns = grid_columns(count, bp.data.num_classes if class_index is None else 0)
    images = torch.cat(list(generate(run.generator, n=count, latent_dim=bp.generator.latent_dim,
                                     num_classes=bp.data.num_classes, seed=seed, class_index=class_index,
                                     truncation=truncation, device=dev, columns=columns,
                                     truncation_psi=truncation_psi))).cpu()
    grid = Path(out) if out else _default_grid(target, run)
    save_grid(images, grid, columns=columns)
    written = save_images(images, Path(individual)) if individual else []
    return SampleGrid(run=run, grid=grid, count=count, statistics=statistics, individual=written)


def _default_grid(target: str | Path, run: RestoredRun) -> Path:
    """``RUN/samples/sample.png``; for ``hf://ORG/NAME``, ``samples/ORG--NAME.png`` here (never in the Hub cache)."""
    from ..engine.hub_cache import is_hub_target, parse_hub_target

    if is_hub_target(target):
        return Path("samples") / f"{parse_hub_target(str(target)).repo_id.replace('/', '--')}.png"
    return RunDir(Path(run.run_dir)).samples / "sample.png"
