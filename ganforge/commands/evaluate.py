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

    check_arguments(metrics=metrics, n=n, reference=reference, registry=registry)
    warn = warn_on_stderr if warn is None else warn
    dev = choose_device(device)
    check_evaluation(metrics, reference=reference, inception=inception, device=dev, registry=registry,
                     protocol=protocol or "standard")
    _check_reference_rows(reference)
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


# Inception's pool3 features, kept in float64 for the generated images and as many reference images.
_FEATURE_BYTES = 2 * 2048 * 8
_ZIP_SIGNATURE = b"PK"  # an .npz is a zip archive; np.load reads anything else as a pickle and says so


def check_arguments(*, metrics: list[str], n: int, reference: str | None, registry: Registry | None = None) -> None:
    """What ``evaluate`` refuses before it loads Inception, a checkpoint or generates an image (``GanforgeError``).

    ``metrics``: at least one, each registered, none twice; ``n``: at least 2 (a covariance needs two) and
    no more than the features of ``n`` generated and ``n`` reference images fit in this machine's memory
    (checked from the count, in no time); ``reference``: a folder or an ``.npz`` (zip) file.
    """
    from ..registry import default_registry

    if not metrics:
        raise GanforgeError("--metrics: name at least one metric, e.g. --metrics fid")
    twice = sorted({name for name in metrics if metrics.count(name) > 1})
    if twice:
        raise GanforgeError(f"--metrics: {', '.join(twice)} named more than once (each metric is computed once)")
    registry = default_registry() if registry is None else registry
    for name in metrics:
        try:
            registry.get("metric", name)
        except GanforgeError as err:
            raise GanforgeError(f"--metrics: {err}") from None
    check_count(n)
    if reference is not None:
        _check_reference_kind(Path(reference).expanduser(), reference)


def check_count(n: int) -> None:
    """``--n``: at least 2 images, and few enough that their features fit in memory."""
    if n < 2:
        raise GanforgeError(f"--n {n}: evaluate needs at least 2 images (10,000 or more for numbers worth comparing)")
    memory = _physical_memory()
    if n * _FEATURE_BYTES > memory:
        raise GanforgeError(f"--n {n:,}: the Inception features of {n:,} generated and as many reference images "
                            f"would take {n * _FEATURE_BYTES / 2**30:,.0f} GiB, more than this machine's "
                            f"{memory / 2**30:,.0f} GiB of memory; use at most --n {memory // _FEATURE_BYTES:,}")


def _physical_memory() -> int:
    """This machine's memory in bytes (1 TiB where the platform does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return 2**40


def _check_reference_kind(path: Path, given: str) -> None:
    """A ``--reference`` file must be an ``.npz`` archive; folders are checked by ``check_evaluation``."""
    if not path.is_file():
        return
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_ZIP_SIGNATURE))
    except OSError as err:
        raise GanforgeError(f"--reference {given}: cannot read it: {err.strerror or err}") from None
    if head != _ZIP_SIGNATURE:
        raise GanforgeError(f"--reference {given}: not an .npz file (an array `features`, or `mu` and `sigma`) "
                            "nor a folder of images")


def _check_reference_rows(reference: str | None) -> None:
    """A reference with fewer than 2 images or feature rows gives no covariance: refused before generating."""
    from ..evaluation import check_reference

    if reference is None:
        return
    found = check_reference(reference)  # already read by check_evaluation when a metric needed it
    if isinstance(found, tuple):  # mu and sigma: a fitted Gaussian, whatever its image count
        return
    count = int(found.shape[0]) if hasattr(found, "shape") else len(found)
    if count < 2:
        what = "feature row" if hasattr(found, "shape") else "image"
        raise GanforgeError(f"--reference {reference}: holds {count} {what}; the metrics need at least 2 "
                            "(10,000 or more for numbers worth comparing)")
