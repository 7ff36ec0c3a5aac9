"""``ganforge train``: everything between a blueprint path and a running Trainer."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import GanforgeError


def train(blueprint: str, *, overrides: list[str], out: str | None, steps: int | None, resume: bool,
          device: str, seed: int | None, registry=None) -> int:  # type: ignore[no-untyped-def]
    """Validate everything cheap first (blueprint, shapes, data, output folder), then build and train.

    ``registry`` defaults to the global one (``build_run``).
    """
    from .build import build_run

    spec = build_run(blueprint, overrides=overrides, registry=registry)
    loaded, registry, assembly, plan = spec.loaded, spec.registry, spec.assembly, spec.plan
    bp = loaded.blueprint

    dataset = build_dataset(loaded, registry)
    run_dir = Path(out) if out else Path("runs") / (bp.name or Path(blueprint).stem)
    created = check_writable(run_dir)
    try:
        return _train(run_dir, loaded=loaded, assembly=assembly, plan=plan, registry=registry, dataset=dataset,
                      steps=steps, resume=resume, device=device, seed=seed)
    except BaseException:
        # A run that fails before writing anything leaves no empty folders behind; only folders
        # this invocation created, and only while still empty, are removed.
        remove_if_empty(created)
        raise


def _train(run_dir: Path, *, loaded, assembly, plan, registry, dataset,  # type: ignore[no-untyped-def]
           steps: int | None, resume: bool, device: str, seed: int | None) -> int:
    """The run itself, in a run folder that is known to take files."""
    import torch

    from .checkpoints import list_checkpoints
    from .distributed import leave, place_process
    from .trainer import Trainer, TrainOptions

    bp = loaded.blueprint
    if not resume and list_checkpoints(run_dir / "checkpoints"):
        raise GanforgeError(f"{run_dir} already holds checkpoints: pass --resume to continue that run, "
                            "or choose another --out")

    placement = place_process(device)
    if placement.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    report = (lambda message: print(message, file=sys.stderr)) if placement.is_main else (lambda message: None)
    # Without --steps, --resume trains to the step count the run recorded (its first command's --steps).
    options = TrainOptions(out=run_dir, steps=steps or bp.train.steps, steps_given=steps is not None,
                           seed=bp.train.seed if seed is None else seed, resume=resume)
    try:
        trainer = Trainer(assembly=assembly, plan=plan, registry=registry, dataset=dataset, options=options,
                          placement=placement, report=report)
        try:
            step = trainer.run()
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not isinstance(err, torch.OutOfMemoryError) and "allocate memory" not in str(err):
                raise
            raise GanforgeError(
                f"{loaded.file}: train.batch_size: a micro-batch of {trainer.micro_batch} images per process does "
                f"not fit in {placement.device} memory: lower train.batch_size or raise train.grad_accumulation "
                "(the last checkpoint is kept)") from None
        report(f"done: step {step}; checkpoints, samples and metrics.jsonl in {run_dir}")
        return step
    finally:
        leave(placement)


def build_dataset(loaded, registry):  # type: ignore[no-untyped-def]
    """The blueprint's dataset; a missing or empty ``data.root`` is reported here, before any model."""
    bp = loaded.blueprint
    component = registry.get("dataset", bp.data.type)
    try:
        dataset = component.build(bp.data.component_settings())
    except GanforgeError as err:
        raise GanforgeError(f"{loaded.file}: data: {err}") from None
    if len(dataset) == 0:
        raise GanforgeError(f"{loaded.file}: data: the dataset is empty (check data.root)")
    return dataset


def check_writable(run_dir: Path) -> list[Path]:
    """Create ``run_dir`` and prove it takes a file; returns the folders this call created, deepest first."""
    import tempfile

    created = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass  # a unique name: every torchrun process may probe at once
    except OSError as err:
        remove_if_empty(created)
        raise GanforgeError(f"cannot write to --out {run_dir}: {err.strerror or err}") from None
    return created


def remove_if_empty(folders: list[Path]) -> None:
    """Remove each folder (deepest first) that is empty; anything with content, or that fails, stays."""
    for folder in folders:
        try:
            folder.rmdir()  # fails unless empty
        except OSError:
            return  # its parents are not empty either
