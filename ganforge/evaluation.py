"""Evaluating a generator the standard way, and saying exactly how it was done.

GAN numbers differ between libraries because of the batch-norm mode, the reference set, the
Inception port and the resize. Every result carries a description of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .assembly import Network
from .blueprint.validation import LoadedBlueprint
from .errors import GanforgeError
from .generation import generate
from .registry import default_registry

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class Evaluation:
    values: dict[str, float]
    protocol: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"{name}: {value:.4f}" for name, value in self.values.items()]
        out += [f"  {key}: {value}" for key, value in self.protocol.items()]
        return out


def evaluate_generator(network: Network, *, loaded: LoadedBlueprint, metrics: list[str], n: int,
                       reference: str | None = None, inception: str | None = None,
                       device: torch.device | str = "cpu", batch_size: int = 50, seed: int = 0,
                       progress: bool = True, generator_label: str = "generator",
                       batch_norm: str = "running statistics") -> Evaluation:
    """Compute ``metrics`` for ``network`` (put in eval mode here) on ``n`` generated images.

    ``batch_norm`` says which statistics its batch norms hold, for the protocol.
    """
    from .metrics.features import extract_features
    from .metrics.inception import load_inception

    registry = default_registry()
    components = [registry.get("metric", name) for name in metrics]
    built = [component.build({}) for component in components]
    bp = loaded.blueprint
    # A metric declaring needs_inception_features = False scores images with its own detector, bound
    # to the run's data settings (bind raises before any image is generated); Inception loads only
    # when some requested metric needs its features.
    own = {id(metric): metric.bind(data=bp.data) for metric in built
           if not getattr(metric, "needs_inception_features", True)}
    extractor = load_inception(inception, device=device) if len(own) < len(built) else None

    def generated_features(extract: Any, label: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        was_training = network.training
        network.eval()
        try:
            batches = generate(network, n=n, latent_dim=bp.generator.latent_dim, num_classes=bp.data.num_classes,
                               batch_size=batch_size, seed=seed, device=device)
            return extract_features(batches, extract, total=n, progress=progress, label=label)
        finally:
            network.train(was_training)

    fake, fake_logits = generated_features(extractor, "generated") if extractor is not None else (None, None)
    real, real_stats, reference_text = None, None, "none needed"
    if extractor is not None and any(metric.needs_real for metric in built if id(metric) not in own):
        real, real_stats, reference_text = reference_features_for(loaded, reference=reference, n=n,
                                                                  extractor=extractor, batch_size=batch_size,
                                                                  progress=progress)
    values: dict[str, float] = {}
    detected: dict[str, torch.Tensor] = {}  # one pass per distinct detector
    for metric in built:
        if id(metric) in own:
            bound = own[id(metric)]
            key = bound.detector.description
            if key not in detected:
                detected[key], _ = generated_features(bound.detector, f"{metric.name} detector")
            values.update(bound.compute(real=None, fake=detected[key]))
            continue
        if metric.needs_real and real is None and metric.name != "fid":
            raise GanforgeError(f"metric {metric.name}: the reference holds only mean and covariance; it needs "
                                "reference features (an .npz with `features`, or a folder of images)")
        values.update(metric.compute(real=real, fake=fake, fake_logits=fake_logits, real_stats=real_stats))
    features = ([extractor.description] if extractor is not None else []) + list(detected)
    protocol = {
        "generated": f"{n} images from the {generator_label} in eval mode (batch norm with {batch_norm}), "
                     f"seed {seed}, uniform classes" if bp.data.num_classes else
                     f"{n} images from the {generator_label} in eval mode (batch norm with {batch_norm}), "
                     f"seed {seed}",
        "reference": reference_text,
        "features": "; ".join(features),
    }
    return Evaluation(values=values, protocol=protocol)


def reference_features_for(loaded: LoadedBlueprint, *, reference: str | None, n: int, extractor: Any,
                           batch_size: int, progress: bool) -> tuple[torch.Tensor | None, Any, str]:
    """Features (or mean/cov) of the reference set: a stats file, a folder of images, or the training data."""
    from .metrics.reference import default_cache_dir, load_reference_file, reference_features

    bp = loaded.blueprint
    if reference is not None and Path(reference).is_file():
        loaded_ref = load_reference_file(Path(reference))
        if isinstance(loaded_ref, tuple):
            return None, loaded_ref, f"statistics file {reference} (mean and covariance only)"
        return loaded_ref, None, f"features file {reference} ({loaded_ref.shape[0]} images)"
    if reference is not None:
        folder = Path(reference)
        if not folder.is_dir():
            raise GanforgeError(f"--reference {reference}: no such folder or statistics file")
        dataset = ImageFiles(folder, resolution=bp.data.resolution, channels=bp.data.channels)
        key = {"reference": str(folder.resolve()), "resolution": bp.data.resolution, "n": n}
        cache = default_cache_dir(str(folder))
        description = f"folder {folder} ({min(n, len(dataset))} of {len(dataset)} images, resized and centre-cropped " \
                      f"to {bp.data.resolution}, no flip)"
    else:
        registry = default_registry()
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
    features = reference_features(dataset, n=n, extractor=extractor, cache_dir=cache, key=key,
                                  batch_size=batch_size, progress=progress)
    return features, None, f"{description}; cached in {cache}"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class ImageFiles:
    """Every image file under a folder (any layout), resized and centre-cropped, in [-1, 1]."""

    def __init__(self, folder: Path, *, resolution: int, channels: int) -> None:
        from .data.imagefolder import colour_mode, image_transform

        self.paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise GanforgeError(f"--reference {folder}: no images found ({', '.join(IMAGE_SUFFIXES)})")
        self.mode = colour_mode(channels)
        self.transform = image_transform(resolution, channels, flip=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert(self.mode)), 0
