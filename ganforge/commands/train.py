"""``ganforge train``: everything between a blueprint path and a running Trainer."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..errors import GanforgeError


def train(blueprint: str, *, overrides: list[str], out: str | None, steps: int | None, resume: bool,
          device: str, seed: int | None, registry=None) -> int:  # type: ignore[no-untyped-def]
    """Validate everything cheap first (blueprint, shapes, data, output folder), then build and train.

    ``registry`` defaults to the global one (``build_run``).
    """
    from ..engine.build import build_dataset, build_run
    from ..engine.run_dir import check_writable, remove_if_empty

    spec = build_run(blueprint, overrides=overrides, registry=registry)
    bp = spec.blueprint
    dataset = build_dataset(spec.loaded, spec.registry, spec.assembly.components)
    run_dir = Path(out) if out else Path("runs") / (bp.name or Path(blueprint).stem)
    created = check_writable(run_dir)
    try:
        return _train(run_dir, spec=spec, dataset=dataset, steps=steps, resume=resume, device=device, seed=seed)
    except BaseException:
        # A run that fails before writing anything leaves no empty folders behind; only folders
        # this invocation created, and only while still empty, are removed.
        remove_if_empty(created)
        raise


def _train(run_dir: Path, *, spec: Any, dataset: Any, steps: int | None, resume: bool, device: str,
           seed: int | None) -> int:
    """The run itself, in a run folder that is known to take files."""
    import torch

    from ..engine.build import build_trainer
    from ..engine.checkpoints import list_checkpoints
    from ..engine.distributed import leave, place_process
    from ..engine.run_dir import RunDir

    loaded = spec.loaded
    bp = loaded.blueprint
    if not resume and list_checkpoints(RunDir(run_dir).checkpoints):
        raise GanforgeError(f"{run_dir} already holds checkpoints: pass --resume to continue that run, "
                            "or choose another --out")

    placement = place_process(device)
    report = (lambda message: print(message, file=sys.stderr)) if placement.is_main else (lambda message: None)
    try:
        # Without --steps, --resume trains to the step count the run recorded (its first command's --steps).
        trainer = build_trainer(spec, placement=placement, out=run_dir, dataset=dataset,
                                seed=bp.train.seed if seed is None else seed, steps=steps or bp.train.steps,
                                steps_given=steps is not None, resume=resume, progress=True, report=report,
                                evaluate=evaluator(bp.train))
        try:
            step = trainer.run()
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not isinstance(err, torch.OutOfMemoryError) and "allocate memory" not in str(err):
                raise
            raise GanforgeError(
                f"{loaded.file}: train.batch_size: a micro-batch of {trainer.update.micro_batch} images per process "
                f"does not fit in {placement.device} memory: lower train.batch_size or raise train.grad_accumulation "
                "(the last checkpoint is kept)") from None
        report(f"done: step {step}; checkpoints, samples and metrics.jsonl in {run_dir}")
        return step
    finally:
        leave(placement)


def evaluator(train: Any) -> Any:
    """What the loop calls at ``train.eval_every``: the blueprint's ``train.eval_*`` metrics, no progress bar."""

    def evaluate(network: Any, *, loaded: Any, device: Any, generator_label: str, sharded: bool = False) -> Any:
        from ..evaluation import evaluate_generator

        return evaluate_generator(network, loaded=loaded, metrics=list(train.eval_metrics), n=train.eval_images,
                                  inception=train.eval_inception, device=device, progress=False,
                                  generator_label=generator_label, protocol=train.eval_protocol, sharded=sharded)

    return evaluate
