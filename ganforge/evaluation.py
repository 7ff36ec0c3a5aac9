"""Evaluating a generator the standard way, and saying exactly how it was done.

GAN numbers differ between libraries because of the batch-norm mode, the reference set, the
Inception port and the resize. Every result carries a description of each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .assembly import Network
from .blueprint.validation import LoadedBlueprint
from .contracts import capability
from .engine.run_dir import RunDir
from .errors import GanforgeError
from .sampling.generation import conditioning_labels, generate
from .sharding import current_shard, gather_rows
from .components.metrics.phase_timings import EvaluationTimings, timed, timed_batches
from .registry import Registry, default_registry

from .components.data.images import IMAGE_EXTENSIONS as IMAGE_SUFFIXES  # the files imagefolder and prepare read


@dataclass
class Evaluation:
    values: dict[str, float]
    protocol: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    """Value name → why it looks the way it does (e.g. kid_std 0 from one subset), shown after it."""

    def lines(self) -> list[str]:
        out = [f"{name}: {value:.4f}" + (f" ({self.notes[name]})" if name in self.notes else "")
               for name, value in self.values.items()]
        out += [f"  {key}: {value}" for key, value in self.protocol.items()]
        return out


def evaluate_generator(network: Network, *, loaded: LoadedBlueprint, metrics: list[str], n: int,
                       reference: str | None = None, inception: str | None = None,
                       device: torch.device | str = "cpu", batch_size: int = 50, seed: int = 0,
                       progress: bool = True, generator_label: str = "generator",
                       batch_norm: str = "running statistics", registry: Registry | None = None,
                       protocol: str = "standard", sharded: bool = False,
                       timings: EvaluationTimings | None = None) -> Evaluation:
    """Compute ``metrics`` for ``network`` (put in eval mode here) on ``n`` generated images.

    ``batch_norm`` says which statistics its batch norms hold, for the protocol. ``registry``
    (default: the global one) finds the metrics and the training data used as the reference.
    ``protocol`` names how images reach Inception (``components/metrics/protocols.py``).
    ``sharded``: every process of a running process group calls this together, each generates and
    extracts its share of the images (``sharding.py``), and every one returns the same result.
    ``timings`` (``components/metrics/phase_timings.py``) gets the seconds of each phase and the features.
    """
    from .components.metrics.features import extract_features
    from .components.metrics.inception import load_inception

    registry = default_registry() if registry is None else registry
    components = [registry.get("metric", name) for name in metrics]
    built = [component.build({}) for component in components]
    bp = loaded.blueprint
    # A metric declaring needs_inception_features = False scores images with its own detector, bound
    # to the run's data settings (bind raises before any image is generated); Inception loads only
    # when some requested metric needs its features.
    own = {id(metric): _bind(metric, data=bp.data, registry=registry) for metric in built
           if not capability(metric, "needs_inception_features", kind="metric")}
    extractor = load_inception(inception, device=device, protocol=protocol) if len(own) < len(built) else None
    _require_logits(built, extractor)
    _require_reference_classes(built, reference=reference, num_classes=bp.data.num_classes)

    shard = current_shard(sharded)

    def generated_features(extract: Any, label: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        count = shard.item_count(n, batch_size)
        feats = logits = None
        was_training = network.training
        network.eval()
        try:
            if count:
                batches = generate(network, n=n, latent_dim=bp.generator.latent_dim,
                                   num_classes=bp.data.num_classes, batch_size=batch_size, seed=seed, device=device,
                                   batches=shard.batch_range(n, batch_size) if shard.world > 1 else None)
                with timed(timings, f"extraction: {label}", excluding="generation"):
                    feats, logits = extract_features(timed_batches(timings, batches, "generation"), extract,
                                                     total=count, progress=progress and shard.rank == 0, label=label)
        finally:
            network.train(was_training)
        if shard.world == 1:
            return feats, logits
        with_logits = bool(getattr(extract, "has_logits", False))
        return gather_rows(feats, shard), gather_rows(logits, shard) if with_logits else None

    # The generated images' conditioning classes, drawn once, for the metrics that declare needs_labels.
    fake_labels = (conditioning_labels(n=n, latent_dim=bp.generator.latent_dim, num_classes=bp.data.num_classes,
                                       batch_size=batch_size, seed=seed)
                   if any(capability(metric, "needs_labels", kind="metric") for metric in built) else None)

    def labels_for(metric: Any) -> dict[str, torch.Tensor | None]:
        given = {"fake_labels": fake_labels} if capability(metric, "needs_labels", kind="metric") else {}
        if capability(metric, "needs_real_labels", kind="metric"):
            given["real_labels"] = real_labels
        return given

    source = None
    if extractor is not None and any(_needs_real(metric) for metric in built if id(metric) not in own):
        source = _reference_source(loaded, reference=reference, n=n,  # a bad reference fails before generating
                                   registry=registry)
        needs_features = [m.name for m in built if id(m) not in own and _needs_full_features(m)]
        if not isinstance(source, _Source) and isinstance(source[0], tuple) and needs_features:
            raise GanforgeError(_STATS_ONLY.format(name=needs_features[0]))
    fake, fake_logits = generated_features(extractor, "generated") if extractor is not None else (None, None)
    real, real_stats, reference_text = None, None, "none needed"
    real_labels = None  # the reference images' classes, for the metrics that declare needs_real_labels
    if source is not None:
        wants_classes = any(capability(metric, "needs_real_labels", kind="metric") for metric in built)
        with timed(timings, "reference"):
            real, real_stats, reference_text = _reference_features(source, n=n, extractor=extractor,
                                                                   batch_size=batch_size, progress=progress,
                                                                   shard=shard, labels=wants_classes)
        real_labels = source.labels if isinstance(source, _Source) else None
    values: dict[str, float] = {}
    notes: dict[str, str] = {}
    detected: dict[str, torch.Tensor] = {}  # one pass per distinct detector
    for metric in built:
        if id(metric) in own:
            bound = own[id(metric)]
            key = bound.detector.description
            if key not in detected:
                detected[key], _ = generated_features(bound.detector, f"{metric.name} detector")
            values.update(bound.compute(real=None, fake=detected[key], **labels_for(bound)))
            continue
        if _needs_full_features(metric) and real is None:
            raise GanforgeError(_STATS_ONLY.format(name=metric.name))
        logits = fake_logits if capability(metric, "needs_logits", kind="metric") else None
        with timed(timings, f"metric: {metric.name}"):
            values.update(metric.compute(real=real, fake=fake, fake_logits=logits, real_stats=real_stats,
                                         **labels_for(metric)))
        notes.update(getattr(metric, "notes", None) or {})
    features = ([extractor.description] if extractor is not None else []) + list(detected)
    protocol_record = {
        "generated": f"{n} images from the {generator_label} in eval mode (batch norm with {batch_norm}), "
                     f"seed {seed}, uniform classes" if bp.data.num_classes else
                     f"{n} images from the {generator_label} in eval mode (batch norm with {batch_norm}), "
                     f"seed {seed}",
        "reference": reference_text,
        "features": "; ".join(features),
    }
    if extractor is not None:
        protocol_record = {"preprocessing": extractor.protocol.name, **protocol_record}
    if timings is not None:
        timings.real, timings.real_stats, timings.fake = real, real_stats, fake
    return Evaluation(values=values, protocol=protocol_record, notes=notes)


def record_evaluation(run_dir: str | Path, result: Evaluation, *, step: int, checkpoint: str | Path,
                      create: bool = False) -> Path | None:
    """Append ``result`` as an ``evaluation`` event to ``run_dir/metrics.jsonl`` (so ``ganforge plot`` shows it).

    Only to a log that exists, unless ``create``; returns the log written to, or None.
    """
    log = RunDir(Path(run_dir)).metrics
    if not create and not log.exists():
        return None
    record = {"event": "evaluation", "step": step, "checkpoint": str(checkpoint), **result.values,
              "protocol": result.protocol}
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    return log


SMALL_SAMPLE = 10_000
"""Below this many images FID reads high and KID is noisy: numbers compare only at the same n."""


def small_sample_warning(metrics: list[str], n: int) -> str | None:
    """A one-line warning when FID or KID is asked for on fewer than ~10,000 images, else None."""
    named = [name for name in ("fid", "kid") if name in metrics]
    if n >= SMALL_SAMPLE or not named:
        return None
    which = " and ".join(name.upper() for name in named)
    return (f"warning: {which} {'are' if len(named) > 1 else 'is'} biased below about 10,000 images "
            f"(--n {n}); compare only numbers computed with the same --n")


def _needs_real(metric: Any) -> bool:
    return bool(capability(metric, "needs_real", kind="metric"))


def _needs_full_features(metric: Any) -> bool:
    """Whether ``metric`` needs per-image reference features, not only their mean and covariance."""
    return _needs_real(metric) and bool(capability(metric, "needs_full_features", kind="metric"))


def _require_logits(metrics: list[Any], extractor: Any) -> None:
    """Refuse, before anything is generated, a metric that reads logits when the Inception file has none."""
    from .components.metrics.inception_score import missing_logits

    for metric in metrics:
        if extractor is not None and capability(metric, "needs_logits", kind="metric") and \
                not getattr(extractor, "has_logits", False):
            raise GanforgeError(missing_logits(metric.name, getattr(extractor, "weights", "the Inception file")))


def _require_reference_classes(metrics: list[Any], *, reference: str | None, num_classes: int | None) -> None:
    """Refuse, before anything is generated, a metric comparing classes (needs_real_labels) that cannot have them.

    ``num_classes`` None: not known yet (``check_evaluation`` runs before the run is read).
    """
    names = [metric.name for metric in metrics if capability(metric, "needs_real_labels", kind="metric")]
    if not names:
        return
    if num_classes == 0:
        raise GanforgeError(f"metric {names[0]} compares generated and reference images class by class, but this "
                            "run is unconditional (data.num_classes 0); use fid")
    if reference is not None:
        raise GanforgeError(f"metric {names[0]} needs the class of every reference image, and --reference "
                            f"{reference} has none (folders, features and statistics files carry no classes); "
                            "leave out --reference to use the run's training data, whose classes are cached "
                            "with its features")


_STATS_ONLY = ("metric {name}: the reference holds only mean and covariance; it needs reference features "
               "(an .npz with `features`, or a folder of images)")


def check_evaluation(metrics: list[str], *, reference: str | None, inception: str | None,
                     device: torch.device | str = "cpu", registry: Registry | None = None,
                     protocol: str = "standard") -> None:
    """What ``evaluate`` checks before it loads a checkpoint or generates an image; raises ``GanforgeError``.

    The metric names; the Inception weights, when a metric needs them (loaded now: ``load_inception``
    keeps them for the evaluation); ``--reference`` when one is given and needed: a readable statistics
    or features file (features when a metric other than FID needs the reference), or a folder with at
    least one readable image.
    """
    registry = default_registry() if registry is None else registry
    built = [registry.get("metric", name).build({}) for name in metrics]
    _require_reference_classes(built, reference=reference, num_classes=None)
    inception_metrics = [metric for metric in built if capability(metric, "needs_inception_features", kind="metric")]
    if not inception_metrics:
        return
    from .components.metrics.inception import load_inception

    _require_logits(inception_metrics, load_inception(inception, device=device, protocol=protocol))
    if reference is None or not any(_needs_real(metric) for metric in inception_metrics):
        return
    found = check_reference(reference)
    if isinstance(found, tuple):
        for metric in inception_metrics:
            if _needs_full_features(metric):
                raise GanforgeError(_STATS_ONLY.format(name=metric.name))


def check_reference(reference: str) -> Any:
    """The loaded ``--reference`` file (see ``load_reference_file``), or the image paths of a folder.

    A folder must hold at least one image that decodes (the first readable one is found by trying them
    in order); a missing path, an unlistable folder or an unreadable file raises ``GanforgeError``.
    """
    from .components.data.imagefolder import UNREADABLE, open_image

    path = Path(reference).expanduser()
    if path.is_file():
        return _load_reference_file(path)
    if not path.is_dir():
        raise GanforgeError(f"--reference {reference}: no such folder or statistics file")
    paths = reference_images(path)
    for candidate in paths:
        try:
            open_image(candidate, mode="RGB")
            return paths
        except UNREADABLE:
            continue
    raise GanforgeError(f"--reference {reference}: none of its {len(paths)} image files can be read "
                        "(empty, corrupt, or over the pixel limit)")


def reference_images(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (any layout; hidden entries skipped, each real folder once)."""
    from .components.data.images import image_files

    paths = image_files(folder)
    if not paths:
        raise GanforgeError(f"--reference {folder}: no images found ({', '.join(IMAGE_SUFFIXES)})")
    return paths


_loaded_files: dict[tuple[str, int, int], Any] = {}


def _load_reference_file(path: Path) -> Any:
    """``load_reference_file``, kept for the last file so the up-front check does not read it twice."""
    from .components.metrics.reference import load_reference_file

    try:
        info = path.stat()
    except OSError as err:
        raise GanforgeError(f"cannot read reference file {path}: {err.strerror or err}") from None
    key = (str(path.resolve()), info.st_mtime_ns, info.st_size)
    if key not in _loaded_files:
        loaded = load_reference_file(path)
        _loaded_files.clear()
        _loaded_files[key] = loaded
    return _loaded_files[key]


def reference_features_for(loaded: LoadedBlueprint, *, reference: str | None, n: int, extractor: Any,
                           batch_size: int, progress: bool,
                           registry: Registry | None = None) -> tuple[torch.Tensor | None, Any, str]:
    """Features (or mean/cov) of the reference set: a stats file, a folder of images, or the training data."""
    return _reference_features(_reference_source(loaded, reference=reference, n=n, registry=registry), n=n,
                               extractor=extractor, batch_size=batch_size, progress=progress)


@dataclass
class _Source:
    dataset: Any
    key: dict[str, Any]
    cache: Path
    description: str
    labels: torch.Tensor | None = None
    """Each reference image's class, once ``_reference_features`` has read them (None: items carry none)."""


def _reference_source(loaded: LoadedBlueprint, *, reference: str | None, n: int,
                      registry: Registry | None = None) -> Any:
    """A ready reference: the loaded file (tensor or (mu, sigma)) or a ``_Source`` dataset; nothing extracted."""
    from .components.data.imagefolder import ImageFiles
    from .components.metrics.reference import default_cache_dir

    bp = loaded.blueprint
    if reference is not None and Path(reference).expanduser().is_file():
        return _load_reference_file(Path(reference).expanduser()), reference
    if reference is not None:
        folder = Path(reference).expanduser()
        paths = check_reference(reference)
        dataset = ImageFiles(paths, resolution=bp.data.resolution, channels=bp.data.channels)
        key = {"reference": str(folder.resolve()), "resolution": bp.data.resolution, "n": n}
        cache = default_cache_dir(str(folder))
        description = f"folder {folder} ({min(n, len(dataset))} of {len(dataset)} images, resized and centre-cropped " \
                      f"to {bp.data.resolution}, no flip)"
        return _Source(dataset, key, cache, description)
    registry = default_registry() if registry is None else registry
    settings = bp.data.component_settings()
    component = registry.get("dataset", bp.data.type)
    if "flip" in component.schema.model_fields:
        settings["flip"] = False  # reference statistics are of the data, not of its augmentation
    try:
        dataset = component.build(settings)
    except GanforgeError as err:
        raise GanforgeError(f"the run's training data is the default reference and cannot be read: {err}; "
                            "pass --reference DIR or a statistics file") from None
    key = {"dataset": bp.data.type, "settings": _plain(settings), "n": n}
    cache = default_cache_dir(settings.get("root"))
    description = (f"training data ({bp.data.type}, {min(n, len(dataset))} of {len(dataset)} images, "
                   f"resolution {bp.data.resolution}, no flip)")
    return _Source(dataset, key, cache, description)


def _reference_features(source: Any, *, n: int, extractor: Any, batch_size: int, progress: bool,
                        shard: Any = None, labels: bool = False) -> tuple[torch.Tensor | None, Any, str]:
    """Features, or mean and covariance, of ``source``, and how they were made; a dataset's classes go to
    ``source.labels`` (with ``labels``, a cache file without them is not used)."""
    from .components.metrics.reference import reference_features

    if not isinstance(source, _Source):
        loaded_ref, reference = source
        if isinstance(loaded_ref, tuple):
            return None, loaded_ref, f"statistics file {reference} (mean and covariance only)"
        return loaded_ref, None, f"features file {reference} ({loaded_ref.shape[0]} images)"
    report: dict[str, Any] = {}
    features = reference_features(source.dataset, n=n, extractor=extractor, cache_dir=source.cache, key=source.key,
                                  batch_size=batch_size, progress=progress, report=report, shard=shard,
                                  labels=labels)
    source.labels = report.get("labels")
    skipped = report.get("skipped", 0)
    note = f", {skipped} unreadable files skipped" if skipped else ""
    return features, None, f"{source.description}{note}; cached in {source.cache}"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _bind(metric: Any, *, data: Any, registry: Any) -> Any:
    """``metric.bind`` with the run's registry, when it takes one (a plugin's may take only ``data``)."""
    import inspect

    params = inspect.signature(metric.bind).parameters.values()
    if any(p.name == "registry" or p.kind is p.VAR_KEYWORD for p in params):
        return metric.bind(data=data, registry=registry)
    return metric.bind(data=data)
