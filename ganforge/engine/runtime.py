"""The machine under a run: device, precision, backend flags, DDP, compile and the rank vote.

The step and the loop stay plain PyTorch: they ask this module for a network's two views, for
autocast and for the backend flags, and never branch on CUDA, DDP or compile themselves.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..contracts import batch_statistics
from .distributed import Placement, any_rank, on_main, process_group_timeout

if TYPE_CHECKING:
    from ..blueprint.schema import TrainSpec

T = TypeVar("T")


@dataclass
class NetworkViews:
    """One network as the step uses it.

    ``module`` is the network itself (weights, state dict, ``frozen_normalisation``). ``update`` is
    the pass whose gradients are this network's own update (DDP hooks, compiled); ``plain`` is a
    pass that needs no DDP hooks (generated images in the D step, D inside the G step), compiled
    too, since under torch.compile every pass must be or half the work runs eagerly.
    """

    module: nn.Module
    update: nn.Module
    plain: nn.Module


class Runtime:
    """Device, autocast, backend flags, DDP and compile for one process of a run."""

    def __init__(self, *, train: "TrainSpec", placement: Placement,
                 report: Callable[[str], None] = print) -> None:
        self.train, self.placement, self.report = train, placement, report
        self.device = placement.device
        self.cuda = self.device.type == "cuda"
        self._vote_group: Any = None
        if train.sync_batchnorm and placement.distributed and not self.cuda:
            report("train.sync_batchnorm: PyTorch's SyncBatchNorm needs CUDA; ignored on CPU")

    # -- networks -------------------------------------------------------------------------
    def place(self, network: nn.Module) -> nn.Module:
        """SyncBN across processes and channels-last memory, as the blueprint asks."""
        if self.train.sync_batchnorm and self.placement.distributed and self.cuda:
            network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
            unsynced = sorted({type(m).__name__ for m in network.modules()
                               if batch_statistics(m) and not isinstance(m, nn.SyncBatchNorm)})
            if unsynced:  # a normalisation of its own that SyncBN cannot convert: say so, never skip silently
                self.report(f"train.sync_batchnorm: {', '.join(unsynced)} normalise with batch statistics but are "
                            "not torch batch norms; they keep per-process statistics")
        if self.cuda and self.train.channels_last:
            network.to(memory_format=torch.channels_last)
        return network

    def views(self, network: nn.Module) -> NetworkViews:
        update, plain = network, network
        if self.placement.distributed:
            update = DistributedDataParallel(network, device_ids=[self.device.index] if self.cuda else None)
        if self.train.compile:
            # Static shapes: a run sees a handful of batch sizes (D's joint pass is twice G's), each
            # worth its own specialised graph; dynamic shapes would trade speed for fewer compiles.
            compile = functools.partial(torch.compile, mode=self.train.compile_mode, dynamic=False)
            plain = compile(network)
            update = compile(update) if self.placement.distributed else plain
        return NetworkViews(module=network, update=update, plain=plain)

    def optimizer(self, make: Callable[..., torch.optim.Optimizer], params: Any) -> torch.optim.Optimizer:
        """``make(params)`` (a network's parameters or parameter groups) with the fused kernels where asked."""
        if not self.train.fused_optimizer:  # the plain per-parameter loop of the reference implementations
            return make(params, fused=None, foreach=False)
        return make(params, fused=True if self.cuda else None)

    @staticmethod
    def no_sync(module: nn.Module, skip: bool) -> contextlib.AbstractContextManager:
        """Under DDP, gradients of all but the last micro-batch need no all-reduce."""
        if skip and isinstance(module, DistributedDataParallel):
            return module.no_sync()
        return contextlib.nullcontext()

    # -- numerics -------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.cuda and self.train.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def backend_flags(self) -> Iterator[None]:
        """TF32 and cuDNN autotuning as the blueprint says, for training, evaluation and sampling alike.

        Set around each use and put back after, so that benchmark variants in one process differ.
        """
        if not self.cuda:
            yield
            return
        matmul = _legacy_matmul_tf32()
        torch.backends.cuda.matmul.allow_tf32 = self.train.tf32
        deterministic = self.train.deterministic
        try:
            with torch.backends.cudnn.flags(enabled=True, benchmark=not deterministic, deterministic=deterministic,
                                            allow_tf32=self.train.tf32):
                yield
        finally:
            if matmul is not None:
                torch.backends.cuda.matmul.allow_tf32 = matmul

    # -- data -----------------------------------------------------------------------------
    def to_device(self, images: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        images = images.to(self.device, non_blocking=True)
        if self.cuda and self.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, (None if labels is None else labels.to(self.device, non_blocking=True))

    # -- processes ------------------------------------------------------------------------
    def agree(self, flag: bool) -> bool:
        """Whether any rank raised ``flag``; every rank must call it at the same step.

        The vote runs over a CPU (gloo) group: it costs microseconds and never waits for the GPU.
        """
        if not self.placement.distributed:
            return flag
        return any_rank(flag, self.placement, group=self._votes())

    def tally(self, values: Sequence[float]) -> list[list[float]]:
        """Every rank's ``values`` (a few numbers, the same count on each; integers exact below 2**53), in rank order.

        One CPU (gloo) collective, like ``agree``: what one rank alone saw (a non-finite loss, skipped
        images) becomes what every rank decides on, so all stop together with the same message.
        """
        if not self.placement.distributed:
            return [list(values)]
        mine = torch.tensor(list(values), dtype=torch.float64)
        every = [torch.empty_like(mine) for _ in range(self.placement.world_size)]
        torch.distributed.all_gather(every, mine, group=self._votes())
        return [row.tolist() for row in every]

    def mean(self, values: Sequence[float]) -> list[float]:
        """``values`` averaged over the ranks (each rank's own otherwise): the logged losses are every rank's."""
        if not self.placement.distributed:
            return list(values)
        total = torch.tensor(list(values), dtype=torch.float64)
        torch.distributed.all_reduce(total, group=self._votes())
        return (total / self.placement.world_size).tolist()

    def on_main(self, work: Callable[[], T]) -> T:
        """``work()`` on rank 0 alone; its result, or its error, on every rank (``distributed.on_main``, over gloo)."""
        if not self.placement.distributed:
            return work()
        return on_main(self.placement, work, group=self._votes())

    def _votes(self) -> Any:
        """The CPU group the votes run over, made at the first vote (a collective, like every vote)."""
        if self._vote_group is None:
            # gloo's own default is a fixed 30 minutes: the votes wait on rank 0's checkpoint writes and
            # evaluations, so they take the job's timeout ($GANFORGE_DIST_TIMEOUT_S) like the default group.
            self._vote_group = torch.distributed.new_group(backend="gloo", timeout=process_group_timeout())
        return self._vote_group

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (just ``[value]`` in one process)."""
        if not self.placement.distributed:
            return [value]
        values = [None] * self.placement.world_size
        torch.distributed.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.placement.distributed:
            torch.distributed.barrier()


def _legacy_matmul_tf32() -> bool | None:
    """The matmul TF32 flag to put back, or None where reading it is refused (torch >= 2.9 after a
    process set the newer ``fp32_precision`` API: the two may not be mixed)."""
    try:
        return torch.backends.cuda.matmul.allow_tf32
    except RuntimeError:
        return None
