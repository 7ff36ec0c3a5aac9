"""The training loop: steps, and after each whatever the schedule says is due.

Reads top to bottom: one step, the losses watched for divergence, then log, evaluate,
checkpoint and sample as due. Everything it calls lives in its own module.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from .run_log import Progress
from .schedule import due
from .signals import StopRequest

if TYPE_CHECKING:
    from .trainer import Trainer


def train(run: "Trainer") -> int:
    """Train ``run`` to ``run.options.steps``; returns the step reached."""
    update, options, main = run.update, run.options, run.placement.is_main
    log = run.open()  # the run folder, --resume, the run log
    progress = Progress(total=options.steps, start=update.step, enabled=options.progress and main)
    fixed = run.fixed_sample_inputs()
    # What rank 0 alone writes goes through ``on_main``: a refused write stops every rank together.
    if update.step == 0:  # what training starts from; a resumed run keeps its own
        run.runtime.on_main(lambda: run.save_samples(fixed, log))
    interval = Interval(update.device, update.images_seen, max_abs_loss=run.train.max_abs_loss)
    first = update.step + 1  # the progress line shows this step too, not only every log_every
    stop = StopRequest(describe=lambda: f"finishing step {update.step + 1}, then checkpointing", report=run.report)
    try:
        with stop:
            while update.step < options.steps:
                d_loss, g_loss = update.train_step()
                interval.add(update.step, d_loss, g_loss)
                now = due(update.step, total=options.steps, train=run.train)
                # The same on every rank (the vote below needs them all), whether rank 0 shows it or not.
                show_first = update.step == first and not now.log and options.progress
                checking = now.checks_losses or show_first or not run.runtime.cuda
                # Syncs with the GPU only when checking, so nothing is ever written after a non-finite loss.
                # One vote a step: every rank stops, diverges or runs out of images together.
                verdict = run.vote(stop=stop.requested, **(_bad(interval) if checking else {"bad_step": -1}))
                if verdict.stop and not checking:  # stopping between checks: the losses first, then the checkpoint
                    verdict = run.vote(stop=True, **_bad(interval))
                stopping = verdict.stop
                # the voted size: every rank words the stop alike, whichever rank saw the bad step
                run.raise_if_diverged(verdict.bad_step, size=verdict.bad_size)
                run.check_skipped(verdict.skipped)
                if now.log:
                    mean, rate = interval.read(update.images_seen)  # images_seen counts every rank's images
                    mean = run.runtime.mean(mean)  # every rank's losses, not rank 0's
                    run.runtime.on_main(lambda: log.write(run.record(mean, rate)) if log is not None else None)
                    progress.update(update.step, rate, {"d": mean[0], "g": mean[1]})
                    interval.reset(update.images_seen)
                elif show_first:  # shown only: the logged mean still covers the whole interval
                    mean, rate = interval.read(update.images_seen)
                    mean = run.runtime.mean(mean)
                    progress.update(update.step, rate, {"d": mean[0], "g": mean[1]})
                if now.evaluate:
                    run.evaluate(log)
                if now.checkpoint or stopping:  # before the samples: a refused sample write loses no progress
                    run.checkpoint()
                if now.sample:
                    run.runtime.on_main(lambda: run.save_samples(fixed, log))
                if stopping:
                    run.report(f"stopped at step {update.step}; continue with --resume")
                    break
    finally:
        progress.finish()
        if log is not None:
            log.close()
    return update.step


def _bad(interval: "Interval") -> dict[str, float]:
    """This process's first bad step and its size, as ``Trainer.vote`` takes them (a GPU sync)."""
    step = interval.first_bad()
    size = interval.size_at(step) if step >= 0 else None
    return {"bad_step": step, "bad_size": float("nan") if size is None else size}


class Interval:
    """Losses and images since the last log line, kept on the device (no sync until read).

    A step is bad when a loss is non-finite or, with ``max_abs_loss`` (``train.max_abs_loss``), larger
    than it in magnitude: one device-side step covers both, read only where the loop already syncs.
    """

    def __init__(self, device: torch.device, images_seen: int, *, max_abs_loss: float | None = None) -> None:
        self.totals = torch.zeros(2, device=device)
        self.bad = torch.full((), -1, dtype=torch.long, device=device)
        self.max_abs_loss = max_abs_loss
        # The largest |loss| of the first bad step (NaN or inf when it was non-finite): why it was bad.
        self.bad_size = torch.full((), float("nan"), device=device)
        self.reset(images_seen)

    def add(self, step: int, d_loss: torch.Tensor, g_loss: torch.Tensor) -> None:
        losses = torch.stack([d_loss, g_loss])
        good = torch.isfinite(losses).all()
        if self.max_abs_loss is not None:  # off: the same kernels as before the limit existed
            size = losses.detach().abs().max().float()  # NaN when a loss is NaN
            good = good & (size <= self.max_abs_loss)
            first = (~good) & (self.bad < 0)
            self.bad_size = torch.where(first, size, self.bad_size)
        self.bad = torch.where((~good) & (self.bad < 0), step, self.bad)
        self.totals += torch.nan_to_num(losses)
        self.counted += 1

    def first_bad(self) -> int:
        """The first step with a non-finite loss (or one above ``max_abs_loss``), or -1."""
        return int(self.bad)

    def size_at(self, step: int) -> float | None:
        """The largest |loss| of ``step``, this interval's first bad step: finite when it was above
        ``max_abs_loss``, NaN or inf when non-finite; None without a limit or for another rank's step.
        Syncs: read only on the way out."""
        if step < 0 or self.max_abs_loss is None or step != self.first_bad():
            return None
        return float(self.bad_size)

    def read(self, images_seen: int) -> tuple[list[float], float]:
        """Mean D and G losses, and images per second, over the interval."""
        rate = (images_seen - self.seen) / max(time.perf_counter() - self.since, 1e-9)
        return (self.totals / self.counted).tolist(), rate

    def reset(self, images_seen: int) -> None:
        self.totals.zero_()
        self.since, self.counted, self.seen = time.perf_counter(), 0, images_seen
