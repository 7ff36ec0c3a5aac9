"""One run of one process: a ``GANUpdate`` on a ``Runtime``, with what the loop does between steps.

The step lives in ``step.py``, the machine in ``runtime.py`` and the loop in ``loop.py``; this
module holds the run's own state around them: checkpoints, resume, evaluation, samples and the
log records.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch

from ..contracts import capability
from ..errors import GanforgeError
from .checkpoints import CheckpointRecord, list_checkpoints, write_best, write_checkpoint
from .calls import component_of
from .distributed import Placement
from .resume import check_fits, resume_newest
from .run_log import RunLog
from .run_dir import RunDir
from .run_lock import RunLock
from .runtime import Runtime
from .samples import column_classes, grid_columns, save_grid, writing
from .seeding import capture_rng, fixed_samples_seed, process_seed, restore_rank_rng, seed_everything
from .step import GANUpdate

if TYPE_CHECKING:
    from ..assembly import Assembly
    from .planning import TrainingPlan
    from ..registry import Registry


class TrainingDiverged(GanforgeError):
    """A non-finite loss: a training outcome (exit 1), not bad input."""

    exit_code = 1


# --resume restores the optimisers' state, their learning rates included: a lower rate needs a new run.
_AFRESH = "lower the learning rates and start afresh: --resume keeps the checkpoint's"


class LossAboveLimit(TrainingDiverged):
    """A finite loss above ``train.max_abs_loss``: a limit the user set, refused like ``data.max_skipped`` (exit 2)."""

    exit_code = 2


@dataclass
class TrainOptions:
    out: Path
    steps: int
    seed: int
    resume: bool = False
    progress: bool = True
    # False when ``steps`` is only the blueprint's default: --resume then trains to the target the
    # run recorded in its checkpoints (the --steps of the command that started it).
    steps_given: bool = True


class Evaluator(Protocol):
    """What the loop calls at ``train.eval_every``: metrics of ``network``, and the protocol they followed."""

    def __call__(self, network: torch.nn.Module, *, loaded: Any, device: torch.device,
                 generator_label: str) -> Any: ...


class Trainer:
    """One run: the update, its runtime, data stream, checkpoints and logs of one process."""

    def __init__(self, *, assembly: "Assembly", plan: "TrainingPlan", registry: "Registry", dataset: Any,
                 options: TrainOptions, placement: Placement, report: Callable[[str], None] = print,
                 evaluate: Evaluator | None = None) -> None:
        self.loaded = assembly.loaded
        self.train = self.loaded.blueprint.train
        self.options, self.placement, self.report = options, placement, report
        self.evaluator = evaluate
        seed_everything(process_seed(options.seed, placement.rank))
        self.runtime = Runtime(train=self.train, placement=placement, report=report)
        self.update = GANUpdate(assembly=assembly, plan=plan, registry=registry, dataset=dataset,
                                runtime=self.runtime, seed=options.seed, total_steps=lambda: self.options.steps)
        self.run_dir = RunDir(Path(options.out))
        self.best_fid: float | None = None
        self.skipped_total = 0  # unreadable images of every rank so far (``vote``)

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.update.train_step()

    def run(self) -> int:
        """Train to ``options.steps`` (``loop.train``) holding the run folder's lock; returns the step reached.

        Rank 0 alone takes the lock (``on_main``: a refusal stops every rank) before anything is
        written into the folder, and drops it however training ends.
        """
        from .loop import train

        lock = RunLock(root=self.run_dir.root)
        self.runtime.on_main(lambda: lock.acquire(report=self.report))
        try:
            return train(self)
        finally:
            lock.release()  # not held on the other ranks: nothing to do there

    # -- what the loop calls --------------------------------------------------------------
    def open(self) -> RunLog | None:
        """Create the run folder, resume when asked, and open the run log (rank 0 only).

        Refuses, before the first step, a run that would have to evaluate without an evaluator.
        """
        if self.train.eval_every and self.evaluator is None:
            raise GanforgeError(f"{self.loaded.file}: train.eval_every: this run was built without an evaluator "
                                "(ganforge train passes one; with build_trainer, pass "
                                "evaluate=ganforge.commands.train.evaluator(blueprint.train))")
        def make_folder() -> None:
            with writing(self.run_dir.root, "run folder"):
                self.run_dir.root.mkdir(parents=True, exist_ok=True)

        self.runtime.on_main(make_folder)  # a refused folder stops every rank, not rank 0 alone
        resumed = None
        if self.options.resume:
            resumed = resume_newest(self.run_dir.checkpoints, load=self.load_state, map_location=self.runtime.device,
                                    report=self.report, agree=self._agree_on_checkpoint)
        logs: list[RunLog] = []
        self.runtime.on_main(lambda: logs.append(RunLog(self.run_dir.metrics, resume_from_step=resumed,
                                                        note=self._intact_note)))
        return logs[0] if logs else None

    def _agree_on_checkpoint(self, found: str) -> None:
        """Every rank found the same checkpoint, or none of them resumes (``resume_newest``'s ``agree``)."""
        every = self.runtime.gather(found)
        if len(set(every)) > 1:
            seen = ", ".join(f"rank {rank}: {what}" for rank, what in enumerate(every))
            raise GanforgeError(f"--resume: the processes found different checkpoints in {self.run_dir.checkpoints} "
                                f"({seen}); every process must read the same run folder (a shared filesystem) "
                                "and checkpoint: fix or move away the one a rank cannot read, then --resume")

    def evaluate(self, log: RunLog | None) -> None:
        """Evaluate (EMA generator when there is one) and keep the best-FID checkpoint.

        An evaluator that takes ``sharded`` runs on every process, each on its share of the images;
        any other runs on rank 0 while the rest wait.
        """
        update = self.update
        sharded = self.placement.distributed and _takes_sharded(self.evaluator)

        def measure() -> Any:
            with self.runtime.backend_flags():
                return self.evaluator(update.sampling_generator(), loaded=self.loaded,  # type: ignore[misc]
                                      device=self.runtime.device,
                                      generator_label="EMA generator" if update.ema is not None else "generator",
                                      **({"sharded": True} if sharded else {}))

        def keep(result: Any) -> None:  # rank 0's part; under DDP its failure is every rank's (``on_main``)
            record = {"event": "evaluation", "step": update.step, **result.values, "protocol": result.protocol}
            if log is not None:
                log.write(record)
            fid = result.values.get("fid")
            if fid is not None and (self.best_fid is None or fid < self.best_fid):
                self.best_fid = fid
                write_best(self.run_dir.checkpoints, dataclasses.replace(self.state(), fid=fid))
                self.report(f"step {update.step}: FID {fid:.3f}, the best so far (checkpoints/best.pt)")

        if sharded:
            result = measure()
            self.runtime.on_main(lambda: keep(result))
        else:
            self.runtime.on_main(lambda: keep(measure()))
        self.runtime.barrier()

    def vote(self, *, stop: bool, bad_step: int, bad_size: float = float("nan")) -> "Verdict":
        """What every rank decides on after a step, from each rank's stop request, first bad step (-1:
        none, or not read this step), its largest |loss| (``raise_if_diverged``'s ``size``; NaN without a limit) and skipped
        images: one CPU collective under DDP. Every rank gets the same rows, so the same verdict."""
        rows = self.runtime.tally([float(stop), float(bad_step), bad_size, float(self.update.stream.skipped)])
        bad = [row for row in rows if row[1] >= 0]
        first = min(bad, key=lambda row: row[1]) if bad else None  # the lowest rank among equal steps
        return Verdict(stop=any(row[0] for row in rows), bad_step=-1 if first is None else int(first[1]),
                       bad_size=float("nan") if first is None else first[2],
                       skipped=int(sum(row[3] for row in rows)))

    def check_skipped(self, skipped: int | None = None) -> None:
        """Stop once more than ``data.max_skipped`` images were unreadable: ``skipped`` counts every rank's
        (``vote``), this process's own when not given."""
        stream = self.update.stream
        self.skipped_total = stream.skipped if skipped is None else skipped
        limit = capability(stream.dataset, "max_skipped", kind="dataset")
        if limit is not None and self.skipped_total > limit:
            raise GanforgeError(f"{self.skipped_total} unreadable images skipped, more than data.max_skipped "
                                f"({limit}): check data.root or raise data.max_skipped")

    def raise_if_diverged(self, bad_step: int, *, size: float = math.nan) -> None:
        """Stop at ``bad_step`` (-1: none), the first step whose loss was non-finite or above ``train.max_abs_loss``.

        ``size`` (the voted ``Verdict.bad_size``, so every rank words it alike) says which: the step's
        largest |loss|, finite when it was above the limit, NaN/inf when non-finite.
        """
        if bad_step < 0:
            return
        folder = self.run_dir.checkpoints
        newest = list_checkpoints(folder)[-1:]  # every file written so far is from a good step
        kept = (f"the last good checkpoint in {folder} is kept ({newest[0].name})" if newest
                else f"no checkpoint was written to {folder} yet")
        limit = self.train.max_abs_loss
        if limit is not None and math.isfinite(size):
            raise LossAboveLimit(f"{self.loaded.file}: train.max_abs_loss: a loss of {size:.3g} at step {bad_step} "
                                 f"is above the limit ({limit:g}); {kept} (raise train.max_abs_loss and --resume, "
                                 f"or {_AFRESH})")
        raise TrainingDiverged(f"non-finite loss at step {bad_step}; {kept} (use train.precision=fp32 and --resume, "
                               f"or {_AFRESH})")

    def record(self, mean: list[float], rate: float) -> dict[str, Any]:
        update = self.update
        scalars = {}
        for prefix, network in (("G.", update.generator), ("D.", update.discriminator)):
            for path, module in network.named_modules():
                declared = capability(module, "logged_scalars", kind="layer")
                if callable(declared):
                    scalars.update({f"{prefix}{path}.{name}": float(value.detach())
                                    for name, value in declared().items()})
        return {
            "step": update.step,
            "time": time.time(),
            "d_loss": mean[0],
            "g_loss": mean[1],
            "images_per_s": rate,
            "skipped_images": self.skipped_total,  # every rank's
            "lr": {"generator": update.g_opt.param_groups[0]["lr"],
                   "discriminator": update.d_opt.param_groups[0]["lr"]},
            "scalars": scalars,  # whatever components declare via logged_scalars(), e.g. attention γ
        }

    def fixed_sample_inputs(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        update = self.update
        generator = torch.Generator().manual_seed(fixed_samples_seed(self.options.seed))
        n = 64
        z = torch.randn(n, update.latent_dim, generator=generator).to(update.device)
        if update.num_classes <= 0:
            return z, None
        # one class per grid column (the grid save_grid lays out), whatever the class count
        columns = grid_columns(n, update.num_classes)
        return z, column_classes(n, update.num_classes, columns, device=update.device)

    @torch.no_grad()
    def save_samples(self, fixed: tuple[torch.Tensor, torch.Tensor | None], log: RunLog | None = None) -> None:
        z, labels = fixed
        with self.runtime.backend_flags():
            network = self.update.sampling_generator()
            was_training = network.training
            network.eval()
            images = torch.cat([network(z[i:i + 16], None if labels is None else labels[i:i + 16])
                                for i in range(0, z.shape[0], 16)])
        network.train(was_training)
        path = self.run_dir.sample_grid(self.update.step)
        save_grid(images.float().cpu(), path, note=self._intact_note)
        if log is not None:
            log.image_file("samples", path, self.update.step)  # the grid as written, in TensorBoard's image tab

    def _intact_note(self) -> str:
        """The end of a write error's line: what was kept, and how to go on."""
        folder = self.run_dir.checkpoints
        kept = list_checkpoints(folder)
        if not kept:
            return "no checkpoint was written"
        return f"the checkpoints in {folder} are intact (newest {kept[-1].name}; fix it, then --resume)"

    # -- checkpoints ----------------------------------------------------------------------
    def _rng_state(self) -> dict[str, Any]:
        """This process's random streams (``seeding.capture_rng``)."""
        return capture_rng(self.update.noise, self.runtime.device if self.runtime.cuda else None)

    def _component_state(self) -> dict[str, Any]:
        """This process's stateful components (``state_dict()`` by blueprint key)."""
        return {path: c.state_dict() for path, c in self.update.stateful_components().items()}

    def state(self, rng_by_rank: list[dict[str, Any]] | None = None,
              components_by_rank: list[dict[str, Any]] | None = None) -> CheckpointRecord:
        """Everything a resumed run needs; ``*_by_rank`` hold every process's random and component state."""
        update = self.update
        components = components_by_rank if components_by_rank is not None else [self._component_state()]
        return CheckpointRecord(
            step=update.step,
            generator=update.generator.state_dict(),
            discriminator=update.discriminator.state_dict(),
            ema=None if update.ema is None else update.ema.state_dict(),
            g_optimizer=update.g_opt.state_dict(),
            d_optimizer=update.d_opt.state_dict(),
            images_seen=update.images_seen,
            best_fid=self.best_fid,
            rng=rng_by_rank if rng_by_rank is not None else [self._rng_state()],
            data={**update.stream.state(), "skipped": self.skipped_total},  # every rank's skipped images
            blueprint=self.loaded.document,
            blueprint_file=self.loaded.file,
            extra={"target_steps": self.options.steps},  # what --resume without --steps trains to
            components=components if any(components) else None,  # one entry per process, like ``rng``
        )

    def checkpoint(self) -> None:
        """Called on every rank at the same step: each rank's random state goes into the file."""
        rng_by_rank = self.runtime.gather(self._rng_state())
        components_by_rank = self.runtime.gather(self._component_state())
        # Rank 0 writes; a refused write (a full disk) stops every rank, none waits for it.
        self.runtime.on_main(lambda: write_checkpoint(self.run_dir.checkpoints,
                                                      self.state(rng_by_rank, components_by_rank),
                                                      keep=self.train.keep_checkpoints))

    def _load_component_state(self, path: Path, saved: list[dict[str, Any]] | None) -> None:
        """Each process takes its own rank's component state (rank 0's, reported, when the world size changed)."""
        stateful = self.update.stateful_components()
        if not stateful:
            return
        by_rank = saved or []
        rank = self.placement.rank
        if len(by_rank) != self.placement.world_size and by_rank:
            self.report(f"{path} holds component state of {len(by_rank)} process(es), this run has "
                        f"{self.placement.world_size}: every process starts from the first one's")
        mine = by_rank[rank] if len(by_rank) == self.placement.world_size else (by_rank[0] if by_rank else {})
        for key, component in stateful.items():
            if key not in mine:
                raise GanforgeError(f"{path} holds no state for {key} ({type(component_of(component)).__name__}); "
                                    "it was written by a run without it, so it cannot resume this blueprint exactly")
            component.load_state_dict(mine[key])

    def load_state(self, path: Path, state: CheckpointRecord) -> int:
        """Put a checkpoint (``path``, as ``state()`` built it) back into this run; returns its step."""
        update = self.update
        check_fits(path, state, blueprint=self.loaded.document, networks={  # one line naming the first misfit
            "generator": (update.generator.state_dict(), state.generator),
            "discriminator": (update.discriminator.state_dict(), state.discriminator),
            "ema": (update.ema.state_dict(), state.ema) if update.ema is not None else ({}, None)})
        try:
            update.generator.load_state_dict(state.generator)
            update.discriminator.load_state_dict(state.discriminator)
            if update.ema is not None and state.ema is not None:
                update.ema.load_state_dict(state.ema)
            update.g_opt.load_state_dict(state.g_optimizer)
            update.d_opt.load_state_dict(state.d_optimizer)
        except (RuntimeError, KeyError, ValueError) as err:
            raise GanforgeError(f"{path} does not match this blueprint's networks: {err}") from err
        update.step = state.step
        target = state.extra.get("target_steps")
        if not self.options.steps_given and isinstance(target, int) and target != self.options.steps:
            self.options.steps = target
            self.report(f"training to step {target}, the run's --steps (pass --steps to change it)")
        restore_rank_rng(state.rng, rank=self.placement.rank, world_size=self.placement.world_size,
                         seed=self.options.seed, step=update.step, noise=update.noise,
                         cuda_device=self.runtime.device if self.runtime.cuda else None, source=path,
                         report=self.report)
        if update.stream.restore(state.data, written_by=len(state.rng) or None):
            saved = state.data.get("world_size") or len(state.rng)
            self.report(f"{path} was written by {saved} process(es), this run has {self.placement.world_size}: "
                        "the images of this epoch not read yet are shared out over them")
        self.skipped_total = update.stream.skipped  # every rank's count so far, carried on by rank 0's stream
        if not self.placement.is_main:
            update.stream.skipped = 0
        self._load_component_state(path, state.components)
        update.images_seen = state.images_seen
        self.best_fid = state.best_fid
        return update.step


@dataclass(frozen=True)
class Verdict:
    """What every rank decided after a step (``Trainer.vote``)."""

    stop: bool  # some rank was asked to stop (a signal)
    bad_step: int  # the first step with a non-finite loss (or one above train.max_abs_loss) on any rank, or -1
    bad_size: float  # that step's largest |loss| on the rank that saw it (NaN: non-finite, or no limit set)
    skipped: int  # unreadable images on all ranks together


def _takes_sharded(evaluator: Any) -> bool:
    """Whether ``evaluator`` can split its work across processes (``ganforge.commands.train.evaluator``'s can)."""
    import inspect

    try:
        return "sharded" in inspect.signature(evaluator).parameters
    except (TypeError, ValueError):
        return False
