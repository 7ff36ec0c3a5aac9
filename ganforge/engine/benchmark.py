"""Training-step throughput, measured the same way for every variant of a blueprint.

Data comes from the built-in procedural set at the blueprint's resolution, so a benchmark
measures the model step (forward, backward, optimiser) and needs no dataset on disk.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class Measurement:
    variant: str
    images_per_s: list[float]
    batch_size: int
    device: str

    @property
    def median(self) -> float:
        return statistics.median(self.images_per_s)


def measure_all(blueprint: str, *, overrides: list[str], variants: list[str], device: str, steps: int,
                repeats: int, warmup: int) -> list[Measurement]:
    """Build every variant, warm each up, then time them round-robin so drift hits all alike."""
    from .distributed import place_process

    placement = place_process(device)
    with tempfile.TemporaryDirectory() as out:
        trainers = [_trainer(blueprint, overrides, variant, placement, Path(out) / str(i))
                    for i, variant in enumerate(variants)]
        for trainer in trainers:
            for _ in range(warmup):
                trainer.train_step()
        _sync(placement.device)
        rates: list[list[float]] = [[] for _ in trainers]
        for _ in range(repeats):
            for index, trainer in enumerate(trainers):
                start = time.perf_counter()
                for _ in range(steps):
                    trainer.train_step()
                _sync(placement.device)
                images = steps * trainer.train.batch_size * trainer.plan.d_steps
                rates[index].append(images / (time.perf_counter() - start))
    return [Measurement(variant=variant or "(blueprint)", images_per_s=r, batch_size=t.train.batch_size,
                        device=str(placement.device)) for variant, r, t in zip(variants, rates, trainers)]


def _trainer(blueprint: str, overrides: list[str], variant: str, placement, out: Path):  # type: ignore[no-untyped-def]
    from ..assembly import assemble
    from ..blueprint.validation import load_blueprint
    from ..registry import default_registry
    from ..training.planning import plan_training
    from ..training.run import build_dataset
    from .trainer import Trainer, TrainOptions

    extra = [variant] if variant else []
    bp = load_blueprint(blueprint, [*overrides, *extra]).blueprint
    synthetic = ["data={type: procedural, resolution: %d, channels: %d, num_classes: %d, size: %d}"
                 % (bp.data.resolution, bp.data.channels, bp.data.num_classes, max(bp.train.batch_size * 4, 64)),
                 "train.num_workers=0"]
    loaded = load_blueprint(blueprint, [*overrides, *extra, *synthetic])
    registry = default_registry()
    trainer = Trainer(assembly=assemble(loaded, registry), plan=plan_training(loaded, registry), registry=registry,
                      dataset=build_dataset(loaded, registry),
                      options=TrainOptions(out=out, steps=10**9, seed=0, progress=False),
                      placement=placement, report=lambda message: None)
    # Keep data loading out of the timing: every step reuses one real batch.
    cached = trainer.stream.next()
    trainer.stream.next = lambda: cached  # type: ignore[method-assign]
    return trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def format_table(results: list[Measurement], *, steps: int, repeats: int, warmup: int) -> str:
    device = results[0].device
    name = torch.cuda.get_device_name(results[0].device) if device.startswith("cuda") else "CPU"
    lines = [f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
             f"{warmup} warm-up steps, then {repeats} × {steps} steps; images/s = real images per second "
             "(batch × D steps per G step)",
             f"{'variant':<40} {'batch':>6} {'median img/s':>13} {'min':>9} {'max':>9}"]
    for r in results:
        lines.append(f"{r.variant:<40} {r.batch_size:>6} {r.median:>13,.1f} {min(r.images_per_s):>9,.1f} "
                     f"{max(r.images_per_s):>9,.1f}")
    return "\n".join(lines)
