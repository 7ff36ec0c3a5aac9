"""One path from a blueprint to a run: load, registry, assemble, plan; then, when asked, a Trainer.

``train``, ``inspect``, ``benchmark`` and ``study`` all start here, so a run built with a custom
registry uses that registry everywhere (assembly, plan, dataset, trainer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal

from ..errors import GanforgeError

if TYPE_CHECKING:
    from ..assembly import Assembly
    from ..blueprint.schema import Blueprint
    from ..blueprint.validation import LoadedBlueprint, ResolvedComponents
    from .distributed import Placement
    from .trainer import Evaluator, Trainer
    from ..registry import Registry
    from .planning import TrainingPlan


@dataclass
class RunSpec:
    """A validated blueprint with everything built from it that needs no weights."""

    loaded: LoadedBlueprint
    registry: Registry
    assembly: Assembly
    plan: TrainingPlan

    @property
    def blueprint(self) -> Blueprint:
        return self.loaded.blueprint


def load_run_blueprint(blueprint: str | Path | LoadedBlueprint, overrides: Iterable[str] = ()) -> LoadedBlueprint:
    """``blueprint`` with ``overrides`` applied: read from its file, or (already loaded) applied to its
    document without reading the file again, exactly as ``load_blueprint(path, [*earlier, *overrides])``."""
    from ..blueprint.overrides import apply_overrides
    from ..blueprint.validation import LoadedBlueprint, load_blueprint, validate_document

    overrides = list(overrides)
    if not isinstance(blueprint, LoadedBlueprint):
        return load_blueprint(blueprint, overrides)
    if not overrides:
        return blueprint
    origins = dict(blueprint.origins)
    document = apply_overrides(blueprint.document, overrides, origins)
    return validate_document(document, file=blueprint.file, origins=origins)


def build_run(blueprint: str | Path | LoadedBlueprint, *, overrides: Iterable[str] = (),
              registry: Registry | None = None) -> RunSpec:
    """Load (or derive, see ``load_run_blueprint``), assemble and plan; ``registry`` defaults to the global one."""
    from ..assembly import assemble
    from ..registry import default_registry
    from .planning import plan_training

    loaded = load_run_blueprint(blueprint, overrides)
    registry = default_registry() if registry is None else registry
    assembly = assemble(loaded, registry)
    return RunSpec(loaded=loaded, registry=registry, assembly=assembly,
                   plan=plan_training(loaded, registry, components=assembly.components))


def synthetic_data_overrides(loaded: LoadedBlueprint) -> list[str]:
    """Procedural images of the blueprint's shape in place of its dataset, read in-process."""
    bp = loaded.blueprint
    return ["data={type: procedural, resolution: %d, channels: %d, num_classes: %d, size: %d}"
            % (bp.data.resolution, bp.data.channels, bp.data.num_classes, max(bp.train.batch_size * 4, 64)),
            "train.num_workers=0"]


def build_trainer(blueprint: str | Path | LoadedBlueprint | RunSpec, *, placement: Placement, out: Path,
                  overrides: Iterable[str] = (), registry: Registry | None = None,
                  data: Literal["synthetic", "real"] = "real", seed: int = 0, steps: int = 10**9,
                  steps_given: bool = True, resume: bool = False, progress: bool = False,
                  report: Callable[[str], None] | None = None, dataset: Any = None,
                  evaluate: Evaluator | None = None) -> Trainer:
    """A Trainer for ``blueprint`` (a path, a loaded blueprint, or a built ``RunSpec``) in ``out``.

    ``data="synthetic"`` swaps the dataset for procedural images of the same shape and repeats one
    batch (``DataStream.repeat``), so a step measures the model alone; ``"real"`` reads the
    blueprint's own dataset (``dataset``, when the caller built it already). Reports are dropped
    unless ``report`` is given; ``evaluate`` is what ``train.eval_every`` calls (``ganforge train``
    passes the evaluation library's).
    """
    from .trainer import Trainer, TrainOptions

    if data not in ("synthetic", "real"):
        raise ValueError(f"data must be 'synthetic' or 'real', not {data!r}")
    given = blueprint if isinstance(blueprint, RunSpec) else None
    if given is not None and registry is None:
        registry = given.registry
    loaded = load_run_blueprint(given.loaded if given is not None else blueprint, overrides)  # a path: read once
    synthetic = synthetic_data_overrides(loaded) if data == "synthetic" else []
    if given is not None and loaded is given.loaded and not synthetic and registry is given.registry:
        run = given
    else:
        run = build_run(loaded, overrides=synthetic, registry=registry)
    if dataset is not None and run is not given:
        raise ValueError("dataset= is for the RunSpec it was built from, with no overrides, registry or synthetic data")
    if dataset is None:
        dataset = build_dataset(run.loaded, run.registry, run.assembly.components)
    options = TrainOptions(out=Path(out), steps=steps, seed=seed, resume=resume, progress=progress,
                           steps_given=steps_given)
    trainer = Trainer(assembly=run.assembly, plan=run.plan, registry=run.registry, dataset=dataset, options=options,
                      placement=placement, report=report or _quiet, evaluate=evaluate)
    trainer.update.stream.repeat = data == "synthetic"  # set before the first batch is read
    return trainer


def build_dataset(loaded: LoadedBlueprint, registry: Registry, components: ResolvedComponents | None = None) -> Any:
    """The blueprint's dataset; a missing or empty ``data.root`` is reported here, before any model."""
    from ..blueprint.validation import resolve_dataset

    resolved = resolve_dataset(loaded, registry) if components is None else components.dataset
    try:
        dataset = resolved.build()
    except GanforgeError as err:
        raise GanforgeError(f"{loaded.file}: data: {err}") from None
    if len(dataset) == 0:
        raise GanforgeError(f"{loaded.file}: data: the dataset is empty (check data.root)")
    return dataset


def _quiet(message: str) -> None:
    del message


__all__ = ["RunSpec", "build_dataset", "build_run", "build_trainer", "load_run_blueprint", "synthetic_data_overrides"]
