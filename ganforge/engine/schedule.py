"""Which of log / checkpoint / evaluate / sample is due after a step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..blueprint.schema import TrainSpec


@dataclass(frozen=True)
class Due:
    log: bool
    checkpoint: bool
    evaluate: bool
    sample: bool

    @property
    def checks_losses(self) -> bool:
        """Whether the losses must be known finite first (a GPU sync): before a log line, checkpoint or evaluation."""
        return self.log or self.checkpoint or self.evaluate


def due(step: int, *, total: int, train: "TrainSpec") -> Due:
    """What is due after ``step`` (counted from 1) of ``total``; the last step does everything."""
    last = step == total
    return Due(log=step % train.log_every == 0 or last,
               checkpoint=step % train.checkpoint_every == 0 or last,
               evaluate=bool(train.eval_every) and (step % train.eval_every == 0 or last),
               sample=step % train.sample_every == 0 or last)
