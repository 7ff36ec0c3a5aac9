"""Each variant × seed trained as an ordinary run folder, one after another, then evaluated.

A run folder is ``OUT/<variant>/seed-<k>/``, the same layout ``ganforge train`` writes, so
``sample``, ``evaluate`` and ``plot`` work on it. ``study-run.json`` records what made the run
(written before training, so a rerun with other overrides is refused instead of mixed in);
``done.json`` is written last, after training and evaluation, and holds the results. Rerunning
the same command skips finished runs, evaluates only metrics a finished run lacks, and resumes
an interrupted run from its newest checkpoint. A run that diverges gets a ``done.json`` saying so
and the study goes on: in an ablation, "this variant diverged" is a result.

Under torchrun every process trains each run together (DDP) and evaluates its share of the images;
rank 0 alone reads and writes the markers and reports (``distributed.on_main``), the others follow.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ...errors import GanforgeError
from .variants import StudyVariant
from ...engine.run_dir import RunDir

RUN_FILE = "study-run.json"
DONE_FILE = "done.json"
EVAL_SEED = 0  # every run is evaluated on the same latents and classes


@dataclass
class RunResult:
    """One finished run: where it is and what its metrics gave."""

    variant: StudyVariant
    seed: int
    folder: Path
    step: int
    values: dict[str, float]
    failed: str | None = None


@dataclass
class StudyOutcome:
    """The finished runs in table order; ``stopped`` names the run a Ctrl-C interrupted, if any.

    ``main``: false in every torchrun process but rank 0, which alone writes the tables. ``refused``: the
    one-line errors of runs a ``--parallel`` worker refused (``folder: reason``), none recorded in ``done.json``.
    """

    results: list[RunResult] = field(default_factory=list)
    stopped: Path | None = None
    main: bool = True
    refused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EvalSettings:
    """How every run is evaluated; ``None`` fields fall back to the run's ``train.eval_*`` settings."""

    metrics: list[str]
    images: int | None = None
    reference: str | None = None
    inception: str | None = None
    batch_size: int = 50
    protocol: str | None = None


def run_folder(out: Path, variant: StudyVariant, seed: int) -> Path:
    return out / variant.slug / f"seed-{seed}"


def run_study(blueprint: str, *, overrides: list[str], variants: list[StudyVariant], assemblies: list[Any],
              seeds: list[int], steps: int | None, evaluation: EvalSettings, device: str, out: Path,
              report: Callable[[str], None]) -> StudyOutcome:
    """Train and evaluate every variant × seed not finished yet; ``assemblies`` from ``check_variants``.

    Under torchrun the processes join one process group for the whole study (each run's training reuses it).
    """
    from ...engine.distributed import leave, place_process

    placement = place_process(device)
    try:
        return _run_all(blueprint, overrides=overrides, variants=variants, assemblies=assemblies, seeds=seeds,
                        steps=steps, evaluation=evaluation, device=device, out=out, placement=placement,
                        report=report if placement.is_main else (lambda message: None))
    finally:
        leave(placement)


def _run_all(blueprint: str, *, overrides: list[str], variants: list[StudyVariant], assemblies: list[Any],
             seeds: list[int], steps: int | None, evaluation: EvalSettings, device: str, out: Path, placement: Any,
             report: Callable[[str], None]) -> StudyOutcome:
    from ...engine.distributed import on_main

    outcome = StudyOutcome(main=placement.is_main)
    total = len(variants) * len(seeds)
    for v_index, (variant, assembly) in enumerate(zip(variants, assemblies)):
        target = steps or assembly.loaded.blueprint.train.steps
        for s_index, seed in enumerate(seeds):
            folder = run_folder(out, variant, seed)
            settings = {"blueprint": str(blueprint), "overrides": [*overrides, *variant.overrides],
                        "variant": variant.name, "seed": seed}
            on_main(placement, lambda: claim_folder(folder, settings))
            number = v_index * len(seeds) + s_index + 1
            say = lambda message, f=folder: report(f"[{number}/{total}] {f}: {message}")  # noqa: E731
            done = on_main(placement, lambda: read_done(folder))  # every rank takes rank 0's view
            missing = pending(done, target=target, metrics=evaluation.metrics)
            if done is not None and missing is not None:
                if not missing:
                    say(f"failed earlier ({done['failed']}), kept" if done.get("failed")
                        else f"finished at step {done['step']}, kept")
                else:
                    say(f"finished, evaluating {', '.join(missing)}")
                    done = evaluate_run(folder, metrics=missing, evaluation=evaluation, device=device, previous=done,
                                        placement=placement)
            else:
                say(f"training {variant.name!r}, seed {seed}, to step {target}")
                done = train_and_evaluate(blueprint, overrides=[*overrides, *variant.overrides], folder=folder,
                                          steps=target, seed=seed, device=device, evaluation=evaluation, say=say,
                                          placement=placement)
                if done is None:
                    outcome.stopped = folder
                    return outcome
            outcome.results.append(_result(variant, seed, folder, done))
    return outcome


def pending(done: dict[str, Any] | None, *, target: int, metrics: list[str]) -> list[str] | None:
    """What a run still needs: None when it must train (no marker, or one short of ``target``), else the
    metrics its ``done.json`` lacks (none for a failed run: its failure is kept, not retried)."""
    if done is None or not (done.get("failed") or done["step"] >= target):
        return None
    return [] if done.get("failed") else [m for m in metrics if m not in done["metrics"]]


def train_and_evaluate(blueprint: str, *, overrides: list[str], folder: Path, steps: int, seed: int, device: str,
                       evaluation: EvalSettings, say: Callable[[str], None],
                       placement: Any = None) -> dict[str, Any] | None:
    """Train (resuming from the newest checkpoint when there is one), then evaluate; None when stopped (Ctrl-C).

    A run that diverges is a result, not the end of the study: ``done.json`` records why it failed.
    ``placement`` (``run_study``'s): under torchrun, only rank 0 writes ``done.json``.
    """
    from ...engine.checkpoints import list_checkpoints, step_of
    from ...engine.distributed import on_main
    from ...engine.trainer import TrainingDiverged
    from ..train import train

    try:
        step = train(blueprint, overrides=overrides, out=str(folder), steps=steps, resume=True, device=device,
                     seed=seed)
    except TrainingDiverged as err:
        say(f"failed: {err}")

        def mark_failed() -> dict[str, Any]:
            kept = list_checkpoints(RunDir(folder).checkpoints)
            done = {"step": step_of(kept[-1]) if kept else 0, "metrics": [], "values": {}, "protocol": {},
                    "failed": " ".join(str(err).split())}
            write_json(folder / DONE_FILE, done)
            return done

        return on_main(placement, mark_failed)
    if step < steps:
        return None
    return evaluate_run(folder, metrics=evaluation.metrics, evaluation=evaluation, device=device, previous=None,
                        placement=placement)


def claim_folder(folder: Path, settings: dict[str, Any]) -> None:
    """Record what makes this run, or refuse a folder a different study made."""
    path = folder / RUN_FILE
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise GanforgeError(f"{path}: unreadable ({err}); move the folder away to start that run over") from None
        for key in ("blueprint", "overrides"):
            if previous.get(key) != settings[key]:
                raise GanforgeError(f"{folder} was made with {key} {previous.get(key)!r}, this study asks for "
                                    f"{settings[key]!r}: choose another --out (or rename the variant)")
        return
    if RunDir(folder).checkpoints.is_dir():
        raise GanforgeError(f"{folder} holds checkpoints that no study made: choose another --out")
    write_json(path, settings)


def evaluate_run(folder: Path, *, metrics: list[str], evaluation: EvalSettings, device: str,
                 previous: dict[str, Any] | None, placement: Any = None) -> dict[str, Any]:
    """Evaluate the run's newest checkpoint as ``ganforge evaluate`` does, then write ``done.json``.

    Under torchrun (``placement``, ``run_study``'s) every process evaluates its share of the images
    and rank 0 alone writes the log entry and ``done.json``.
    """
    from ...engine.distributed import choose_device, on_main
    from ...evaluation import evaluate_generator, record_evaluation
    from ...engine.restore import restore

    sharded = placement is not None and placement.distributed
    dev = placement.device if sharded else choose_device(device)
    run = restore(folder, device=dev)
    train_spec = run.loaded.blueprint.train
    result = evaluate_generator(run.generator, loaded=run.loaded, metrics=metrics,
                                n=evaluation.images or train_spec.eval_images, reference=evaluation.reference,
                                inception=evaluation.inception or train_spec.eval_inception, device=dev,
                                batch_size=evaluation.batch_size, seed=EVAL_SEED, progress=False,
                                generator_label="EMA generator" if run.uses_ema else "raw generator",
                                protocol=evaluation.protocol or train_spec.eval_protocol, sharded=sharded)

    def write() -> dict[str, Any]:
        if not _logged(folder, step=run.step, checkpoint=run.checkpoint, values=result.values):
            record_evaluation(folder, result, step=run.step, checkpoint=run.checkpoint, create=True)
        done = {"step": run.step, "checkpoint": str(run.checkpoint), "metrics": [], "values": {}, "protocol": {}}
        if previous is not None and previous["step"] == run.step:
            done.update(metrics=list(previous["metrics"]), values=dict(previous["values"]),
                        protocol=dict(previous["protocol"]))
        done["metrics"] += [m for m in metrics if m not in done["metrics"]]
        done["values"].update(result.values)
        done["protocol"].update(result.protocol)
        write_json(folder / DONE_FILE, done)
        return done

    return on_main(placement, write)


def read_done(folder: Path) -> dict[str, Any] | None:
    """The run's results, or None while it is unfinished (a damaged marker counts as unfinished)."""
    try:
        done = json.loads((folder / DONE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    needed = {"step": int, "metrics": list, "values": dict, "protocol": dict}
    if not isinstance(done, dict) or any(not isinstance(done.get(k), t) for k, t in needed.items()):
        return None
    return _current_names(done)


def _current_names(done: dict[str, Any]) -> dict[str, Any]:
    """A ``done.json`` written before the long-range ``coverage`` metric became ``combination_coverage``, in
    today's names: its value moves to the new key, since ``coverage`` is now density_coverage's value."""
    if "coverage" not in done["metrics"]:
        return done
    metrics = list(dict.fromkeys("combination_coverage" if m == "coverage" else m for m in done["metrics"]))
    values = dict(done["values"])
    if "coverage" in values and "density_coverage" not in metrics:
        values["combination_coverage"] = values.pop("coverage")
    return {**done, "metrics": metrics, "values": values}


def _logged(folder: Path, *, step: int, checkpoint: Any, values: dict[str, Any]) -> bool:
    """Whether the run's log already holds this evaluation, the same numbers of the same checkpoint: a study
    killed between the log entry and ``done.json`` evaluates again on the rerun and must not log it twice."""
    try:
        lines = RunDir(folder).metrics.read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (isinstance(record, dict) and record.get("event") == "evaluation" and record.get("step") == step
                and record.get("checkpoint") == str(checkpoint) and all(record.get(k) == v for k, v in values.items())):
            return True
    return False


def write_json(path: Path, value: Any) -> None:
    """Write atomically: an interrupted study never leaves half a marker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _result(variant: StudyVariant, seed: int, folder: Path, done: dict[str, Any]) -> RunResult:
    values = {k: float(v) for k, v in done["values"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return RunResult(variant=variant, seed=seed, folder=folder, step=int(done["step"]), values=values,
                     failed=done.get("failed"))
