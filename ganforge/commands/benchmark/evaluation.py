"""Where ``ganforge evaluate`` spends its time: generation, resize + Inception, the reference, the metric maths.

One real evaluation (``evaluate_checkpoint`` with ``EvaluationTimings``: the phases are timed in
the evaluation path itself, nothing recorded in the run's log), then each metric's maths again
``repeats`` times on the same features for a median, beside the precision/recall maths as ganforge
computed it before issue 21 (float64 ``torch.cdist`` on the CPU, ``float64_precision_recall``), the
repeats taking turns so that a change of load falls on old and new alike: one run gives the
before/after of the maths. Generation and extraction run once: their time is
minutes, not noise.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

BEFORE_PR = "pr, float64 CPU cdist (before, ganforge ec30a16)"


@dataclass
class EvaluationReport:
    target: str
    step: int
    settings: dict[str, Any]
    once: dict[str, float]
    """Phase → seconds in the one evaluation (generation, extraction: generated, reference, metric: NAME)."""
    maths: dict[str, list[float]] = field(default_factory=dict)
    """Metric maths → seconds of each repeat on the evaluation's features."""
    values: dict[str, float] = field(default_factory=dict)
    before_values: dict[str, float] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        from .training import environment

        return {**environment(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                "machine": platform.processor() or platform.machine(), "target": self.target, "step": self.step,
                "settings": self.settings, "once_s": self.once,
                "maths_s": {name: {"median": statistics.median(times), "repeats": times}
                            for name, times in self.maths.items()},
                "values": self.values, "before_values": self.before_values, "protocol": self.protocol}


def measure_evaluation(target: str, *, metrics: list[str], n: int, repeats: int, device: str = "auto",
                       reference: str | None = None, inception: str | None = None, batch_size: int = 50,
                       seed: int = 0, progress: bool = True, before: bool = True,
                       protocol: str | None = None) -> EvaluationReport:
    """Evaluate ``target`` once with timings, then repeat each metric's maths (and, with ``before``,
    the pre-issue-21 precision/recall maths) on the same features. ``protocol`` ``legacy`` times the
    pre-issue-21 preprocessing (float images, ``F.interpolate``)."""
    from ...components.metrics.phase_timings import EvaluationTimings
    from ...contracts import capability
    from ...registry import default_registry
    from ..evaluate import evaluate_checkpoint

    timings = EvaluationTimings()
    run, result = evaluate_checkpoint(target, metrics=metrics, n=n, reference=reference, inception=inception,
                                      device=device, batch_size=batch_size, seed=seed, progress=progress,
                                      timings=timings, record=False, protocol=protocol)
    device_used = str(timings.fake.device) if timings.fake is not None else device
    report = EvaluationReport(target=str(target), step=run.step, once=dict(timings.seconds), values=result.values,
                              protocol=result.protocol,
                              settings={"metrics": metrics, "n": n, "repeats": repeats, "batch_size": batch_size,
                                        "device": device_used})
    registry = run.registry if run.registry is not None else default_registry()
    timed: dict[str, Callable[[], Any]] = {}
    for name in metrics:
        metric = registry.get("metric", name).build({})
        extra_inputs = (capability(metric, "needs_labels", kind="metric") or getattr(metric, "needs_real_labels", False)
                        or capability(metric, "needs_logits", kind="metric"))
        if f"metric: {name}" not in timings.seconds or extra_inputs:
            continue  # scored by its own detector, or needs more than features: timed once above
        timed[f"metric: {name}"] = functools.partial(metric.compute, real=timings.real, fake=timings.fake,
                                                     real_stats=timings.real_stats)
        if name == "pr" and before and timings.real is not None:
            timed[BEFORE_PR] = functools.partial(float64_precision_recall, timings.real, timings.fake, k=metric.k,
                                                 chunk_size=metric.chunk_size)
    report.maths = _interleaved(timed, repeats)
    if BEFORE_PR in timed:
        report.before_values = timed[BEFORE_PR]()
    return report


def _interleaved(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Each callable timed ``repeats`` times, taking turns, so a change in the machine's load
    falls on old and new maths alike rather than on whichever ran last."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return times


def float64_precision_recall(real: torch.Tensor, fake: torch.Tensor, *, k: int = 3,
                             chunk_size: int = 1000) -> dict[str, float]:
    """Precision and recall as ganforge computed them before issue 21 (commit ec30a16,
    ``components/metrics/precision_recall.py``): float64 on the CPU, ``torch.cdist`` per chunk of
    rows, k-th neighbour from ``topk``. Kept to time the old maths beside the new."""
    real, fake = real.to("cpu", torch.float64), fake.to("cpu", torch.float64)

    def radii(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty(x.shape[0], dtype=torch.float64)
        for start in range(0, x.shape[0], chunk_size):
            d = torch.cdist(x[start:start + chunk_size], x)
            out[start:start + chunk_size] = d.topk(k + 1, dim=1, largest=False).values[:, k]
        return out

    def inside(queries: torch.Tensor, support: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        out = torch.empty(queries.shape[0], dtype=torch.bool)
        for start in range(0, queries.shape[0], chunk_size):
            d = torch.cdist(queries[start:start + chunk_size], support)
            out[start:start + chunk_size] = (d <= r[None, :]).any(dim=1)
        return out

    real_radii, fake_radii = radii(real), radii(fake)
    return {"precision": float(inside(fake, real, real_radii).double().mean()),
            "recall": float(inside(real, fake, fake_radii).double().mean())}


def format_evaluation_table(report: EvaluationReport) -> str:
    from .training import environment

    env, s = environment(), report.settings
    lines = [f"evaluate {report.target} (step {report.step}) --metrics {','.join(s['metrics'])} --n {s['n']}: "
             f"device {s['device']}, torch {env['torch']}, {torch.get_num_threads()} threads on {os.cpu_count()} "
             f"CPU cores",
             f"{'phase':<52} {'seconds':>9}  how"]
    labels = {"generation": "generation (generator forward passes)",
              "extraction: generated": "resize + Inception of the generated images",
              "reference": "reference features (cache read, or extraction)"}
    for phase, seconds in report.once.items():
        if not phase.startswith("metric: "):
            lines.append(f"{labels.get(phase, phase):<52} {seconds:>9.2f}  once")
    for phase, seconds in report.once.items():
        if phase.startswith("metric: "):
            name = "metric maths: " + phase[len("metric: "):]
            times = report.maths.get(phase)
            how = (f"median of {len(times)} (min {min(times):.2f}, max {max(times):.2f}); {seconds:.2f} in the "
                   f"evaluation") if times else "once"
            lines.append(f"{name:<52} {statistics.median(times) if times else seconds:>9.2f}  {how}")
    if BEFORE_PR in report.maths:
        times = report.maths[BEFORE_PR]
        same = all(report.values.get(key) == value for key, value in report.before_values.items())
        lines.append(f"{'metric maths: ' + BEFORE_PR:<52} {statistics.median(times):>9.2f}  median of {len(times)} "
                     f"(min {min(times):.2f}, max {max(times):.2f}); values "
                     f"{'equal' if same else 'differ: ' + str(report.before_values)}")
    lines += [f"{name}: {value:.4f}" for name, value in report.values.items()]
    lines += [f"  {key}: {value}" for key, value in report.protocol.items()]
    return "\n".join(lines)
