"""``study --parallel N``: N runs at once on one machine, each its own process (``worker``).

The study process claims every folder and decides what each run needs exactly as the sequential
runner does (``pending``), then keeps N workers busy. Each worker slot has one GPU, round-robin over
the visible ones (``CUDA_VISIBLE_DEVICES`` as given, else every device torch sees; none: left unset),
and every worker gets ``threads`` torch threads, so N runs do not oversubscribe the CPU. A worker's
output goes to ``study-worker.log`` in its run folder; the study prints one line as each run starts
and ends. The tables come from the runs' ``done.json`` when all are done, as in the sequential study.

A worker that crashes is recorded in its ``done.json`` as failed (as a diverged run is); one that
refuses with a one-line error (exit 2) is shown failed but not recorded, so a rerun tries it again,
and the study ends with exit 2 naming it. Ctrl-C / SIGTERM / SIGUSR1 sends each worker one SIGTERM
(it checkpoints and stops; a second signal stops them at once) and starts no more: the rerun resumes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Mapping

from ...errors import GanforgeError
from .runner import (DONE_FILE, EvalSettings, RunResult, StudyOutcome, _result, claim_folder, pending, read_done,
                     run_folder, write_json)
from .variants import StudyVariant
from .worker import STOPPED

LOG_FILE = "study-worker.log"
POLL_SECONDS = 0.1


def check_parallel(parallel: int, threads: int | None, environ: Mapping[str, str]) -> None:
    """One line for a count that is no count, and for ``--parallel`` > 1 under torchrun."""
    if parallel < 1:
        raise GanforgeError(f"--parallel: {parallel} is not a number of runs at once; give 1 or more")
    if threads is not None and threads < 1:
        raise GanforgeError(f"--threads-per-run: {threads} is not a number of threads; give 1 or more")
    if parallel > 1 and any(key in environ for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK")):
        raise GanforgeError(f"--parallel {parallel}: under torchrun every process trains each run together; "
                            "run the study without --parallel, or without torchrun")


def threads_per_run(parallel: int, threads: int | None = None, cpus: int | None = None) -> int:
    """``threads`` when given, else this process's CPUs shared out: max(1, cpus // parallel)."""
    if threads is not None:
        return threads
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // parallel)


def visible_devices(device: str, environ: Mapping[str, str]) -> list[str]:
    """The GPUs to share out: an existing ``CUDA_VISIBLE_DEVICES`` list as given, else (not ``--device cpu``)
    every device torch counts; empty when there are none."""
    text = environ.get("CUDA_VISIBLE_DEVICES")
    if text is not None:
        return [d.strip() for d in text.split(",") if d.strip()]
    if device == "cpu":
        return []
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def assign_devices(devices: list[str], count: int) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` for each of ``count`` worker slots, round-robin; None (left unset) without GPUs."""
    return [devices[slot % len(devices)] if devices else None for slot in range(count)]


@dataclass
class Job:
    """A run that needs a worker: ``evaluate`` lists the metrics to add, None to train."""

    number: int
    variant: StudyVariant
    seed: int
    folder: Path
    target: int
    evaluate: list[str] | None


@dataclass
class Running:
    job: Job
    process: subprocess.Popen  # type: ignore[type-arg]
    log: IO[bytes]
    slot: int


def run_parallel(blueprint: str, *, overrides: list[str], variants: list[StudyVariant], assemblies: list[Any],
                 seeds: list[int], steps: int | None, evaluation: EvalSettings, device: str, out: Path,
                 report: Callable[[str], None], parallel: int, threads: int | None = None,
                 environ: Mapping[str, str] | None = None) -> StudyOutcome:
    """Train and evaluate every variant × seed not finished yet, ``parallel`` at a time; tables are the caller's."""
    from ...engine.signals import StopRequest

    environ = dict(os.environ if environ is None else environ)
    check_parallel(parallel, threads, environ)
    total = len(variants) * len(seeds)
    dones: dict[Path, dict[str, Any]] = {}
    order: list[tuple[StudyVariant, int, Path]] = []
    jobs: list[Job] = []
    for v_index, (variant, assembly) in enumerate(zip(variants, assemblies)):
        target = steps or assembly.loaded.blueprint.train.steps
        for s_index, seed in enumerate(seeds):
            folder = run_folder(out, variant, seed)
            claim_folder(folder, {"blueprint": str(blueprint), "overrides": [*overrides, *variant.overrides],
                                  "variant": variant.name, "seed": seed})
            order.append((variant, seed, folder))
            number = v_index * len(seeds) + s_index + 1
            done = read_done(folder)
            missing = pending(done, target=target, metrics=evaluation.metrics)
            if done is not None and missing == []:
                report(f"[{number}/{total}] {folder}: " + (f"failed earlier ({done['failed']}), kept"
                                                           if done.get("failed") else
                                                           f"finished at step {done['step']}, kept"))
                dones[folder] = done
            else:
                jobs.append(Job(number=number, variant=variant, seed=seed, folder=folder, target=target,
                                evaluate=missing))
    settings = _WorkerSettings(blueprint=str(blueprint), overrides=overrides, evaluation=evaluation, device=device,
                               threads=threads_per_run(parallel, threads), environ=environ,
                               slots=assign_devices(visible_devices(device, environ), parallel))
    outcome = StudyOutcome()
    refused: list[str] = []
    failed: dict[Path, str] = {}
    with StopRequest(describe=lambda: "stopping every run at its next checkpoint",
                     report=lambda message: report(message.strip())) as stop:
        stopped = _run_jobs(jobs, settings=settings, total=total, report=report, stop=stop, dones=dones,
                            failed=failed, refused=refused)
    if stopped:
        outcome.stopped = stopped[0]
    for variant, seed, folder in order:
        if folder in dones:
            outcome.results.append(_result(variant, seed, folder, dones[folder]))
        elif folder in failed:
            outcome.results.append(RunResult(variant=variant, seed=seed, folder=folder, step=0, values={},
                                             failed=failed[folder]))
    outcome.refused = refused
    return outcome


@dataclass(frozen=True)
class _WorkerSettings:
    blueprint: str
    overrides: list[str]
    evaluation: EvalSettings
    device: str
    threads: int
    environ: dict[str, str]
    slots: list[str | None]


def _run_jobs(jobs: list[Job], *, settings: _WorkerSettings, total: int, report: Callable[[str], None], stop: Any,
              dones: dict[Path, dict[str, Any]], failed: dict[Path, str], refused: list[str]) -> list[Path]:
    """Keep every slot busy until the jobs are done or a stop is asked; returns the runs left unfinished."""
    waiting = list(jobs)
    running: list[Running] = []
    stopped: list[Path] = []
    signalled = 0
    try:
        while waiting or running:
            while waiting and len(running) < len(settings.slots) and not stop.requested:
                busy = {r.slot for r in running}
                slot = min(s for s in range(len(settings.slots)) if s not in busy)
                running.append(_start(waiting.pop(0), slot, settings, total=total, report=report))
            if stop.requested and not signalled:
                signalled = 1
                for run in running:
                    _terminate(run.process)
            if stop.requested and not running:
                break
            time.sleep(POLL_SECONDS)
            for run in [r for r in running if r.process.poll() is not None]:
                running.remove(run)
                run.log.close()
                _finish(run, total=total, report=report, stopping=stop.requested, dones=dones, failed=failed,
                        refused=refused, stopped=stopped)
    except BaseException:  # a second signal (KeyboardInterrupt) or a crash here: no worker outlives the study
        for run in running:
            _terminate(run.process)
        for run in running:
            run.process.wait()
            run.log.close()
        raise
    stopped.extend(job.folder for job in waiting)
    return sorted(stopped, key=lambda folder: [j.folder for j in jobs].index(folder))


def _start(job: Job, slot: int, settings: _WorkerSettings, *, total: int, report: Callable[[str], None]) -> Running:
    spec = {"blueprint": settings.blueprint, "overrides": [*settings.overrides, *job.variant.overrides],
            "folder": str(job.folder), "steps": job.target, "seed": job.seed, "device": settings.device,
            "evaluation": dataclasses.asdict(settings.evaluation), "evaluate": job.evaluate,
            "threads": settings.threads, "parent": os.getpid()}
    env = {**settings.environ, "OMP_NUM_THREADS": str(settings.threads), "MKL_NUM_THREADS": str(settings.threads)}
    gpu = settings.slots[slot]
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    log_path = job.folder / LOG_FILE
    log = open(log_path, "ab")
    process = subprocess.Popen([sys.executable, "-m", "ganforge.commands.study.worker", json.dumps(spec)],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)  # the terminal's Ctrl-C reaches the study, which relays it
    what = (f"finished, evaluating {', '.join(job.evaluate)}" if job.evaluate is not None
            else f"training {job.variant.name!r}, seed {job.seed}, to step {job.target}")
    where = f"{settings.threads} thread{'s' if settings.threads != 1 else ''}" + (
        f", CUDA_VISIBLE_DEVICES={gpu}" if gpu is not None else "")
    report(f"[{job.number}/{total}] {job.folder}: {what} (process {process.pid}, {where}; log {log_path})")
    return Running(job=job, process=process, log=log, slot=slot)


def _finish(run: Running, *, total: int, report: Callable[[str], None], stopping: bool,
            dones: dict[Path, dict[str, Any]], failed: dict[Path, str], refused: list[str],
            stopped: list[Path]) -> None:
    from ...engine.checkpoints import list_checkpoints, step_of
    from ...engine.run_dir import RunDir

    job, code = run.job, run.process.returncode
    say = lambda message: report(f"[{job.number}/{total}] {job.folder}: {message}")  # noqa: E731
    done = read_done(job.folder) if code == 0 else None
    if done is not None and pending(done, target=job.target, metrics=job.evaluate or []) == []:
        dones[job.folder] = done
        say(f"failed: {done['failed']}" if done.get("failed") else f"finished at step {done['step']}")
        return
    if stopping or code == STOPPED:
        stopped.append(job.folder)
        say("stopped at its last checkpoint; rerun the same command to continue")
        return
    last = _last_line(job.folder / LOG_FILE)
    if code == 2:
        refused.append(f"{job.folder}: {last.removeprefix('error: ')}")
        failed[job.folder] = last
        say(last)
        return
    reason = f"its process ended with {'signal ' + str(-code) if code < 0 else 'exit code ' + str(code)}" + (
        f" ({last})" if last else "") + f"; see {job.folder / LOG_FILE}"
    kept = list_checkpoints(RunDir(job.folder).checkpoints)
    record = {"step": step_of(kept[-1]) if kept else 0, "metrics": [], "values": {}, "protocol": {}, "failed": reason}
    write_json(job.folder / DONE_FILE, record)
    dones[job.folder] = record
    say(f"failed: {reason}")


def _terminate(process: subprocess.Popen) -> None:  # type: ignore[type-arg]
    try:
        process.terminate()
    except ProcessLookupError:
        pass


def _last_line(path: Path) -> str:
    """The worker's last words (its error line, or a traceback's last line), one line."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    return " ".join(lines[-1].split())[:500] if lines else ""
