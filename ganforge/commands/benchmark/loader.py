"""The data pipeline alone: can the blueprint's dataset feed the GPU's step rate?

Run against ``ganforge benchmark`` rows on the same machine: a loader slower than the
training step's images/s starves the GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass
class LoaderReport:
    rows: list[dict[str, Any]]
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        from .training import environment

        return {**environment(), "cpu_cores": os.cpu_count(), "settings": self.settings, "rows": self.rows}


def measure_loader_of(blueprint: str, *, overrides: list[str], repeats: int, warmup: int, batches: int,
                      workers: list[int] | None = None) -> LoaderReport:
    """images/s of the blueprint's dataset at its batch size, for 0 workers and for ``train.num_workers``."""
    from ...blueprint.validation import load_blueprint
    from ...components.data.throughput import measure_loader
    from ...registry import default_registry
    from ...engine.build import build_dataset

    loaded = load_blueprint(blueprint, overrides)
    bp = loaded.blueprint
    dataset = build_dataset(loaded, default_registry())
    counts = workers if workers is not None else sorted({0, bp.train.num_workers})
    rows = [measure_loader(dataset, batch_size=bp.train.batch_size, num_workers=n, batches=batches, warmup=warmup,
                           repeats=repeats) for n in counts]
    settings = {"blueprint": blueprint, "overrides": overrides, "dataset": bp.data.type,
                "resolution": bp.data.resolution, "batch_size": bp.train.batch_size}
    return LoaderReport(rows=rows, settings=settings)


def format_loader_table(report: LoaderReport) -> str:
    s = report.settings
    lines = [f"data loader alone: {s['dataset']} at {s['resolution']}², batch {s['batch_size']}, "
             f"{os.cpu_count()} CPU cores; median of repeats after warm-up (compare with the step's img/s)",
             f"{'workers':>7} {'batches/s':>10} {'img/s':>10}"]
    for row in report.rows:
        lines.append(f"{row['num_workers']:>7} {row['batches_per_s']:>10.1f} {row['images_per_s']:>10,.0f}")
    return "\n".join(lines)
