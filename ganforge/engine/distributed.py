"""Process-group set-up for torchrun; a single process needs none of it."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

from ..errors import GanforgeError

T = TypeVar("T")


@dataclass(frozen=True)
class Placement:
    """Where this process runs and which part of the job is its own."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    # whether ``place_process`` created the process group (``leave`` destroys only that one): a study
    # joins once and trains run after run in the same group
    joined: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


TIMEOUT_ENV = "GANFORGE_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800
"""How long a collective waits for a missing rank before the job fails. torch's default for NCCL
(``torch.distributed.constants.default_pg_nccl_timeout``, 10 minutes in torch 2.14.1) can be shorter
than writing a large checkpoint to slow storage; stating ours makes it the same on every backend."""


def process_group_timeout() -> timedelta:
    """The process-group timeout: ``$GANFORGE_DIST_TIMEOUT_S`` seconds, else 30 minutes."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise GanforgeError(f"{TIMEOUT_ENV}={text!r}: give a positive number of seconds")
    return timedelta(seconds=seconds)


def choose_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise GanforgeError("--device cuda was asked for but no CUDA device is available (use --device cpu)")
    return torch.device(choice)


def place_process(choice: str) -> Placement:
    """Read torchrun's environment (if any), pick the device and join the process group."""
    device = choose_device(choice)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Placement(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=process_group_timeout())
    return Placement(device=device, rank=rank, world_size=world_size, local_rank=local_rank, joined=joined)


def any_rank(flag: bool, placement: Placement, group: object = None) -> bool:
    """True on every rank if ``flag`` is true on any (a collective: every rank must call it).

    Pass a gloo ``group`` to vote with a CPU tensor, which never waits for the GPU.
    """
    if not placement.distributed:
        return flag
    device = "cpu" if group is not None else placement.device
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=group)
    return bool(value.item() > 0)


def leave(placement: Placement) -> None:
    """Leave the process group once every rank is done with it.

    Without the barrier a rank could tear gloo down while a peer still talks to it, and a process
    sometimes aborted at exit ("terminate called without an active exception", 1 in 8 two-process
    CPU runs here under load).

    Called while an exception propagates (``leave`` sits in a ``finally``), the barrier waits at most
    ``FAILED_BARRIER_S``: a failure every rank voted on brings them all here at once, but one this
    rank met alone (a bug, a lost device) finds the others inside another collective, and waiting
    for them would hold this process, and the launcher that restarts or ends the job, for the whole
    process-group timeout. Then the group is left as it is and the process exits with its error.
    """
    if not (placement.distributed and dist.is_initialized()):
        return
    if sys.exc_info()[0] is None:
        dist.barrier()
    elif not _barrier_within(FAILED_BARRIER_S):
        return
    if placement.joined:
        dist.destroy_process_group()


FAILED_BARRIER_S = 5.0


def _barrier_within(seconds: float) -> bool:
    """Whether every rank reached a barrier within ``seconds``."""
    try:
        dist.barrier(async_op=True).wait(timeout=timedelta(seconds=seconds))
    except Exception:  # noqa: BLE001  (timed out, or a peer already gone: either way, not all here)
        return False
    return True


def on_main(placement: Placement | None, work: Callable[[], T], group: object = None) -> T:
    """``work()`` done by rank 0 alone, its result or its error handed to every rank (a collective).

    What only rank 0 does (write a file, read a marker) must fail on every rank or on none: a rank
    failing alone leaves the others waiting at their next collective until the process-group timeout.
    Rank 0 re-raises its own exception; the others raise a ``GanforgeError`` with its one line and exit code.
    ``placement`` None: a single process.
    """
    if placement is None or not placement.distributed:
        return work()
    box: list[Any] = [None]
    failure: BaseException | None = None
    if placement.is_main:
        try:
            box[0] = ("done", work())
        except BaseException as err:  # noqa: BLE001  (handed on, then re-raised)
            failure = err
            box[0] = ("failed", " ".join(str(err).split()) or type(err).__name__, getattr(err, "exit_code", 2))
    dist.broadcast_object_list(box, src=0, group=group)
    if failure is not None:
        raise failure
    if box[0][0] == "failed":
        error = GanforgeError(box[0][1])
        error.exit_code = box[0][2]  # type: ignore[attr-defined]
        raise error
    return box[0][1]
