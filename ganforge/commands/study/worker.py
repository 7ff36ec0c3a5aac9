"""One run of a ``study --parallel`` as its own process: ``python -m ganforge.commands.study.worker SPEC``.

Its own process so that a crash ends only this run, and so that ``CUDA_VISIBLE_DEVICES`` and the
thread count are this run's alone. It does what the sequential runner does for one run (train,
resuming, then evaluate; or evaluate the metrics a finished run lacks) and writes the same
``done.json``. Its output goes to the run folder's log; the study reads the exit code:
0 done (``done.json`` written, a diverged run's included), ``STOPPED`` stopped by a signal after
checkpointing, 2 a one-line refusal (printed as ``error: ...``), anything else a crash.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

STOPPED = 3


def main(argv: list[str]) -> int:
    """Run the one job ``argv[0]`` (JSON) describes; returns the exit code above."""
    from ...errors import GanforgeError

    spec = json.loads(argv[0])
    watch_parent(int(spec["parent"]))  # the study's own pid: it may be gone before this line runs
    try:
        return _run(spec)
    except GanforgeError as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr, flush=True)
        return 2


def _run(spec: dict[str, Any]) -> int:
    import torch

    from .runner import EvalSettings, evaluate_run, read_done, train_and_evaluate

    torch.set_num_threads(int(spec["threads"]))
    print(f"study worker: process {os.getpid()}, torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}", file=sys.stderr, flush=True)
    folder = Path(spec["folder"])
    evaluation = EvalSettings(**spec["evaluation"])
    if spec["evaluate"] is not None:
        evaluate_run(folder, metrics=list(spec["evaluate"]), evaluation=evaluation, device=spec["device"],
                     previous=read_done(folder))
        return 0
    say = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    done = train_and_evaluate(spec["blueprint"], overrides=list(spec["overrides"]), folder=folder,
                              steps=int(spec["steps"]), seed=int(spec["seed"]), device=spec["device"],
                              evaluation=evaluation, say=say)
    return STOPPED if done is None else 0


def watch_parent(parent: int, every: float = 1.0) -> None:
    """Stop (as SIGTERM does: checkpoint first) when the study that started this process is gone,
    so a study killed outright leaves no run training on behind its rerun."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="study-parent-watch", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
