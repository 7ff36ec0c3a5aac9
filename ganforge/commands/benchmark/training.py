"""Training-step throughput, measured the same way for every variant of a blueprint.

Every variant is built and warmed up first, then timed round-robin, so that drift (clocks,
temperature, other load) hits all rows alike. Each row reports the median images/s, the step
split into the D and G updates, peak device memory, and how far the step is from the device:
FLOPs counted by torch's own counter on the assembled graph, achieved TFLOP/s, and on CUDA the
fraction of a bf16 matrix-product peak measured in the same run.

``data="synthetic"`` (the default) feeds one real batch of procedural images of the blueprint's
shape over and over, so the model step is measured alone; ``data="real"`` reads the
blueprint's own dataset through the engine's data stream.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from ...blueprint.validation import LoadedBlueprint
    from ...registry import Registry

#: The overrides that turn any blueprint into the way the reference implementations train:
#: fp32 without TF32, eager, NCHW, the plain per-parameter Adam loop (attention is made
#: explicit separately, per attention layer that offers it).
BASELINE_OVERRIDES = ["train.precision=fp32", "train.tf32=false", "train.compile=false",
                      "train.channels_last=false", "train.fused_optimizer=false", "train.joint_d_pass=false"]
BASELINE_NAME = "baseline (fp32 eager, explicit attention)"


@dataclass
class Variant:
    """One row: a name and the overrides that make it (on top of the common ``--set``)."""

    name: str
    overrides: list[str]


@dataclass
class Row:
    variant: str
    overrides: list[str]
    batch_size: int
    images_per_s: list[float]
    d_ms: float
    g_ms: float
    peak_memory_bytes: int | None
    flops_per_step: float | None
    d_steps: int = 1
    matmul_peak_tflops: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.images_per_s)

    @property
    def achieved_tflops(self) -> float | None:
        """Counted FLOPs per step × median steps per second."""
        if self.flops_per_step is None:
            return None
        steps_per_s = self.median / (self.batch_size * self.d_steps)
        return self.flops_per_step * steps_per_s / 1e12

    @property
    def peak_fraction(self) -> float | None:
        achieved = self.achieved_tflops
        if achieved is None or not self.matmul_peak_tflops:
            return None
        return achieved / self.matmul_peak_tflops

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record.update(median_images_per_s=self.median,
                      flops_per_image=None if self.flops_per_step is None else self.flops_per_step / self.batch_size,
                      achieved_tflops=self.achieved_tflops, peak_fraction=self.peak_fraction)
        return record


@dataclass
class Report:
    rows: list[Row]
    device: str
    device_name: str
    settings: dict[str, Any]
    matmul_peak_tflops: float | None

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "device_name": self.device_name, **environment(),
                "matmul_peak_tflops_bf16": self.matmul_peak_tflops, "settings": self.settings,
                "rows": [row.to_json() for row in self.rows]}


def environment() -> dict[str, Any]:
    """Versions a timing depends on."""
    return {"torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "python": platform.python_version(), "cpu_threads": torch.get_num_threads()}


def parse_variant(text: str) -> Variant:
    """``KEY=VALUE`` or several joined by ``;``; the text is also the row's name."""
    overrides = [part.strip() for part in text.split(";") if part.strip()]
    return Variant(name=text.strip() or "(blueprint)", overrides=overrides)


def baseline_variant(blueprint: str | Path | LoadedBlueprint, overrides: list[str], *,
                     registry: Registry | None = None) -> Variant:
    """The reference way of running this blueprint's graph, with every attention layer explicit."""
    from ...contracts import NETWORK_KINDS
    from ...registry import default_registry
    from ...engine.build import load_run_blueprint

    bp = load_run_blueprint(blueprint, overrides).blueprint
    registry = default_registry() if registry is None else registry
    explicit = []
    for role in ("generator", "discriminator"):
        for index, spec in enumerate(getattr(bp, role).attention):
            component = registry.find(spec.type, NETWORK_KINDS)  # as the assembler resolves it
            if "kernel" in component.schema.model_fields:
                explicit.append(f"{role}.attention.{index}.kernel=explicit")
    return Variant(name=BASELINE_NAME, overrides=[*BASELINE_OVERRIDES, *explicit])


def measure_all(blueprint: str | Path | LoadedBlueprint, *, overrides: list[str], variants: list[Variant],
                device: str, steps: int, repeats: int, warmup: int, data: Literal["synthetic", "real"] = "synthetic",
                count_flops: bool = True, baseline: bool = False, registry: Registry | None = None) -> Report:
    """Build every variant, warm each up, then time them round-robin.

    The blueprint file is read once; every variant (and with ``baseline``, a ``baseline_variant``
    row added last) is derived from it.
    """
    from ...engine.build import load_run_blueprint
    from ...engine.distributed import place_process

    loaded = load_run_blueprint(blueprint, overrides)
    if baseline:
        variants = [*variants, baseline_variant(loaded, [], registry=registry)]
    placement = place_process(device)
    dev = placement.device
    with tempfile.TemporaryDirectory() as out:
        trainers = [_variant_trainer(loaded, variant.overrides, placement, Path(out) / str(i), data=data,
                                     registry=registry) for i, variant in enumerate(variants)]
        flops = [_flops_per_step(loaded, v.overrides, placement, Path(out) / f"f{i}", registry=registry)
                 if count_flops else None for i, v in enumerate(variants)]
        peaks: list[int | None] = []
        for trainer in trainers:
            if dev.type == "cuda":
                _sync(dev)
                torch.cuda.reset_peak_memory_stats(dev)
            for _ in range(warmup):
                trainer.train_step()
            _sync(dev)
            peaks.append(torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None)
        rates: list[list[float]] = [[] for _ in trainers]
        halves: list[list[tuple[float, float]]] = [[] for _ in trainers]
        for _ in range(repeats):
            for index, trainer in enumerate(trainers):
                clock = _Clock(dev)
                start = time.perf_counter()
                update = trainer.update  # the step itself, its halves timed apart
                for _ in range(steps):
                    clock.mark()
                    update.begin_step()
                    d_loss = update.d_update()
                    clock.mark()
                    g_loss = update.g_update()
                    update.end_step({"discriminator": d_loss, "generator": g_loss})
                clock.mark()
                _sync(dev)
                images = steps * trainer.train.batch_size * trainer.update.plan.d_steps
                rates[index].append(images / (time.perf_counter() - start))
                halves[index].extend(clock.halves())
        peak = matmul_peak_tflops(dev) if dev.type == "cuda" else None
    rows = []
    for variant, trainer, rate, half, memory, flop in zip(variants, trainers, rates, halves, peaks, flops):
        row = Row(variant=variant.name, overrides=variant.overrides, batch_size=trainer.train.batch_size,
                  images_per_s=rate, d_ms=statistics.median(h[0] for h in half) * 1e3,
                  g_ms=statistics.median(h[1] for h in half) * 1e3, peak_memory_bytes=memory,
                  flops_per_step=flop, d_steps=trainer.update.plan.d_steps, matmul_peak_tflops=peak)
        rows.append(row)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({platform.machine()})"
    settings = {"blueprint": blueprint if isinstance(blueprint, str) else str(loaded.file), "overrides": overrides, "steps": steps, "repeats": repeats,
                "warmup": warmup, "data": data}
    return Report(rows=rows, device=str(dev), device_name=name, settings=settings, matmul_peak_tflops=peak)


class _Clock:
    """Marks between the halves of each step: CUDA events on a GPU (no sync), wall time on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def _seconds(self, a: Any, b: Any) -> float:
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a

    def halves(self) -> list[tuple[float, float]]:
        """(D seconds, G seconds) of each step; the last mark closes the last step."""
        m = self.marks
        return [(self._seconds(m[i], m[i + 1]), self._seconds(m[i + 1], m[i + 2])) for i in range(0, len(m) - 2, 2)]


def _variant_trainer(loaded: LoadedBlueprint, extra: list[str], placement: Any, out: Path, *, data: str,
                     registry: Registry | None) -> Any:
    from ...engine.build import build_trainer

    return build_trainer(loaded, overrides=extra, placement=placement, out=out, data=data,  # type: ignore[arg-type]
                         registry=registry)


def _flops_per_step(loaded: LoadedBlueprint, extra: list[str], placement: Any, out: Path, *,
                    registry: Registry | None = None) -> float:
    """FLOPs of one training step (every D update and the G update, forward and backward).

    Counted by ``torch.utils.flop_counter`` on an eager copy of the variant (the counter sees
    the operators the graph runs; compiling changes how, not how many), at a small batch and
    scaled: every counted operator is linear in the batch. ``loaded`` holds the common overrides.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from ...engine.build import build_trainer, load_run_blueprint

    bp = load_run_blueprint(loaded, extra).blueprint
    small = bp.train.grad_accumulation * placement.world_size * 2
    trainer = build_trainer(loaded, overrides=[*extra, "train.compile=false", f"train.batch_size={small}"],
                            placement=placement, out=out, data="synthetic", registry=registry)
    trainer.train_step()  # first steps may take one-off paths (lazy state); count a typical one
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    return counter.get_total_flops() * bp.train.batch_size / small


def matmul_peak_tflops(device: torch.device, *, size: int = 8192, repeats: int = 10) -> float:
    """The bf16 matrix-product rate this device reaches, measured now (median of repeats).

    Random operands: a product of zeros runs faster than real data and would flatter the peak.
    """
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = [cuda_seconds(lambda: a @ b) for _ in range(repeats)]
    return 2 * size**3 / statistics.median(times) / 1e12


def cuda_seconds(run: Any) -> float:
    """Device time of one call of ``run``, from CUDA events around it."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def format_table(report: Report) -> str:
    s = report.settings
    env = environment()
    peak = (f"; bf16 matmul peak measured now: {report.matmul_peak_tflops:,.0f} TFLOP/s"
            if report.matmul_peak_tflops else "")
    lines = [f"device {report.device} ({report.device_name}), torch {env['torch']}, CUDA {env['cuda'] or '-'}, "
             f"{env['cpu_threads']} CPU threads; {s['data']} data; {s['warmup']} warm-up steps, then "
             f"{s['repeats']} × {s['steps']} steps{peak}",
             "img/s = real images per second (batch × D steps per G step), median; D/G = median ms per step; "
             "GFLOP/img = counted FLOPs of one step / batch",
             f"{'variant':<44} {'batch':>5} {'img/s':>9} {'min':>9} {'max':>9} {'D ms':>8} {'G ms':>8} "
             f"{'peak mem':>9} {'GFLOP/img':>9} {'TFLOP/s':>8} {'of peak':>7}"]
    for r in report.rows:
        memory = f"{r.peak_memory_bytes / 2**30:.2f} GiB" if r.peak_memory_bytes is not None else "n/a"
        flops = f"{r.flops_per_step / r.batch_size / 1e9:.2f}" if r.flops_per_step else "n/a"
        achieved = f"{r.achieved_tflops:.1f}" if r.achieved_tflops is not None else "n/a"
        fraction = f"{r.peak_fraction:.1%}" if r.peak_fraction is not None else "n/a"
        lines.append(f"{r.variant:<44} {r.batch_size:>5} {r.median:>9,.1f} {min(r.images_per_s):>9,.1f} "
                     f"{max(r.images_per_s):>9,.1f} {r.d_ms:>8.1f} {r.g_ms:>8.1f} {memory:>9} {flops:>9} "
                     f"{achieved:>8} {fraction:>7}")
    return "\n".join(lines)

