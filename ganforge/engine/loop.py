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
    if main and update.step == 0:  # what training starts from; a resumed run keeps its own
        run.save_samples(fixed, log)
    interval = Interval(update.device, update.images_seen)
    first = update.step + 1  # the progress line shows this step too, not only every log_every
    stop = StopRequest(describe=lambda: f"finishing step {update.step + 1}, then checkpointing", report=run.report)
    try:
        with stop:
            while update.step < options.steps:
                d_loss, g_loss = update.train_step()
                interval.add(update.step, d_loss, g_loss)
                now = due(update.step, total=options.steps, train=run.train)
                stopping = run.runtime.agree(stop.requested)
                show_first = update.step == first and not now.log and progress.enabled
                if now.checks_losses or show_first or stopping or not run.runtime.cuda:
                    # Syncs with the GPU: only here, so nothing is ever written after a non-finite loss.
                    run.raise_if_diverged(interval.first_bad())
                run.check_skipped()
                if now.log:
                    mean, rate = interval.read(update.images_seen)
                    if log is not None:
                        log.write(run.record(mean, rate))
                    progress.update(update.step, rate, {"d": mean[0], "g": mean[1]})
                    interval.reset(update.images_seen)
                elif show_first:  # shown only: the logged mean still covers the whole interval
                    mean, rate = interval.read(update.images_seen)
                    progress.update(update.step, rate, {"d": mean[0], "g": mean[1]})
                if now.evaluate:
                    run.evaluate(log)
                if now.checkpoint or stopping:  # before the samples: a refused sample write loses no progress
                    run.checkpoint()
                if main and now.sample:
                    run.save_samples(fixed, log)
                if stopping:
                    run.report(f"stopped at step {update.step}; continue with --resume")
                    break
    finally:
        progress.finish()
        if log is not None:
            log.close()
    return update.step


class Interval:
    """Losses and images since the last log line, kept on the device (no sync until read)."""

    def __init__(self, device: torch.device, images_seen: int) -> None:
        self.totals = torch.zeros(2, device=device)
        self.bad = torch.full((), -1, dtype=torch.long, device=device)
        self.reset(images_seen)

    def add(self, step: int, d_loss: torch.Tensor, g_loss: torch.Tensor) -> None:
        losses = torch.stack([d_loss, g_loss])
        finite = torch.isfinite(losses).all()
        self.bad = torch.where((~finite) & (self.bad < 0), step, self.bad)
        self.totals += torch.nan_to_num(losses)
        self.counted += 1

    def first_bad(self) -> int:
        """The first step with a non-finite loss, or -1."""
        return int(self.bad)

    def read(self, images_seen: int) -> tuple[list[float], float]:
        """Mean D and G losses, and images per second, over the interval."""
        rate = (images_seen - self.seen) / max(time.perf_counter() - self.since, 1e-9)
        return (self.totals / self.counted).tolist(), rate

    def reset(self, images_seen: int) -> None:
        self.totals.zero_()
        self.since, self.counted, self.seen = time.perf_counter(), 0, images_seen
