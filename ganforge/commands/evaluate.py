"""``ganforge evaluate``: metrics of a run or checkpoint, checked cheaply first and recorded in its log."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import GanforgeError
from ..evaluation import Evaluation, check_evaluation, evaluate_generator, record_evaluation, small_sample_warning

if TYPE_CHECKING:
    from ..components.metrics.phase_timings import EvaluationTimings
    from ..engine.restore import RestoredRun
    from ..registry import Registry


def evaluate_checkpoint(target: str | Path, *, metrics: list[str], n: int, reference: str | None = None,
                        inception: str | None = None, device: str = "auto", batch_size: int = 50, seed: int = 0,
                        prefer_ema: bool = True, standing_stats: int = 0, progress: bool = True,
                        warn: Callable[[str], None] | None = None,
                        registry: Registry | None = None,
                        protocol: str | None = None, timings: EvaluationTimings | None = None,
                        record: bool = True) -> tuple["RestoredRun", Evaluation]:
    """``ganforge evaluate``: restore a run or checkpoint, evaluate it, and record it in its ``metrics.jsonl``.

    Metric names, Inception weights and ``reference`` are checked first (a bad one fails in seconds,
    not after generating); ``warn`` gets the small-sample warning (default: stderr). With
    ``standing_stats`` N > 0 the batch-norm statistics are first recomputed over N passes.
    ``protocol`` (default: the run's ``train.eval_protocol``) names the Inception preprocessing. The
    result is appended to the run's ``metrics.jsonl`` only when the run already has one (and ``record``);
    ``timings`` is passed to ``evaluate_generator`` (``ganforge benchmark --evaluation``).
    """
    from ..engine.distributed import choose_device
    from ..engine.restore import restore, warn_on_stderr
    from ..sampling.standing_stats import seeded_standing_statistics

    if not metrics:
        raise GanforgeError("--metrics: name at least one metric, e.g. --metrics fid")
    warn = warn_on_stderr if warn is None else warn
    dev = choose_device(device)
    check_evaluation(metrics, reference=reference, inception=inception, device=dev, registry=registry,
                     protocol=protocol or "standard")
    run = restore(target, device=dev, prefer_ema=prefer_ema, registry=registry)
    warning = small_sample_warning(metrics, n)
    if warning:
        warn(warning)
    bp = run.loaded.blueprint
    protocol = protocol or bp.train.eval_protocol
    statistics = seeded_standing_statistics(run.generator, passes=standing_stats, sample_seed=seed,
                                            latent_dim=bp.generator.latent_dim, num_classes=bp.data.num_classes,
                                            device=dev)
    result = evaluate_generator(run.generator, loaded=run.loaded, metrics=metrics, n=n, reference=reference,
                                inception=inception, device=dev, batch_size=batch_size, seed=seed,
                                progress=progress, protocol=protocol,
                                generator_label="EMA generator" if run.uses_ema else "raw generator",
                                batch_norm=statistics,
                                registry=run.registry if run.registry is not None else registry,
                                timings=timings)
    if record:
        record_evaluation(run.run_dir, result, step=run.step, checkpoint=run.checkpoint)
    return run, result
