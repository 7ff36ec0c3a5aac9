"""The training loop: alternate D and G updates per the plan, for any assembled pair of networks.

Nothing here knows an architecture. The loop reads the loss, regularisers and update plan
from the blueprint, and the networks are opaque ``(x, labels) -> tensor`` modules.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..assembly import Assembly
from ..errors import GanforgeError
from ..contracts import capability
from ..components.layers.spectral_norm import buffers_outside_spectral_norm, refresh_spectral_norm
from ..registry import Registry
from ..components.optim.update_rules import TrainingPlan
from .checkpoints import CheckpointRecord, list_checkpoints, write_best, write_checkpoint
from .data_stream import DataStream
from .distributed import Placement, any_rank
from .resume import resume_newest
from .run_log import Progress, RunLog
from .samples import save_grid, writing
from .seeding import capture_rng, derive_seed, fixed_samples_seed, process_seed, restore_rank_rng, seed_everything


class TrainingDiverged(GanforgeError):
    exit_code = 1


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


class Trainer:
    """One run: networks, optimisers, data stream, checkpoints and logs of one process."""

    def __init__(self, *, assembly: Assembly, plan: TrainingPlan, registry: Registry, dataset: Any,
                 options: TrainOptions, placement: Placement, report: Callable[[str], None] = print) -> None:
        self.loaded = assembly.loaded
        bp = self.loaded.blueprint
        self.train = bp.train
        self.options, self.placement, self.plan, self.report = options, placement, plan, report
        self.device = placement.device
        self.num_classes = bp.data.num_classes
        self.latent_dim = bp.generator.latent_dim
        self.cuda = self.device.type == "cuda"
        seed_everything(process_seed(options.seed, placement.rank))

        per_process = self.train.batch_size // placement.world_size
        if per_process * placement.world_size != self.train.batch_size:
            raise self.loaded.error(f"batch size {self.train.batch_size} does not split over "
                                    f"{placement.world_size} processes", "train.batch_size")
        self.micro_batch = per_process // self.train.grad_accumulation
        if self.micro_batch * self.train.grad_accumulation != per_process or self.micro_batch < 1:
            raise self.loaded.error(f"{per_process} images per process do not split into "
                                    f"{self.train.grad_accumulation} micro-batches", "train.grad_accumulation")

        self.stream = DataStream(dataset, batch_size=self.micro_batch, seed=options.seed, rank=placement.rank,
                                 world_size=placement.world_size, num_workers=self.train.num_workers,
                                 pin_memory=self.cuda)
        self.generator = assembly.generator.build(self.device)
        self.discriminator = assembly.discriminator.build(self.device)
        if self.train.sync_batchnorm and placement.distributed and not self.cuda:
            report("train.sync_batchnorm: PyTorch's SyncBatchNorm needs CUDA; ignored on CPU")
        elif self.train.sync_batchnorm and placement.distributed:
            self.generator = nn.SyncBatchNorm.convert_sync_batchnorm(self.generator)
            self.discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(self.discriminator)
        if self.cuda and self.train.channels_last:
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        self.ema = None
        if plan.ema_decay is not None:
            self.ema = copy.deepcopy(self.generator).eval().requires_grad_(False)

        # Real and generated images share one D pass when nothing in D mixes images of a batch.
        self.joint_d_pass = self.train.joint_d_pass and not _batch_dependent(self.discriminator)
        self.loss = registry.get("loss", bp.loss.type).build(bp.loss.settings)
        self.regularizers = [registry.get("regularizer", r.type).build(r.settings) for r in bp.regularizers]
        self.g_opt = self._optimizer(registry, "generator", self.generator)
        self.d_opt = self._optimizer(registry, "discriminator", self.discriminator)

        # Forward passes that must update DDP state go through these; the raw modules are used
        # for passes whose gradients are not (or not only) this network's own.
        self.g_train: nn.Module = self.generator
        self.d_train: nn.Module = self.discriminator
        if placement.distributed:
            ids = [self.device.index] if self.cuda else None
            self.g_train = DistributedDataParallel(self.generator, device_ids=ids)
            self.d_train = DistributedDataParallel(self.discriminator, device_ids=ids)
        # Passes that need no DDP hooks (generated images in the D step, D inside the G step) go
        # through these; under torch.compile every pass must, or half the work runs eagerly.
        self.g_plain: nn.Module = self.generator
        self.d_plain: nn.Module = self.discriminator
        if self.train.compile:
            # Static shapes: a run sees a handful of batch sizes (D's joint pass is twice G's), each
            # worth its own specialised graph; dynamic shapes would trade speed for fewer compiles.
            compile = functools.partial(torch.compile, mode=self.train.compile_mode, dynamic=False)
            self.g_plain = compile(self.generator)
            self.d_plain = compile(self.discriminator)
            self.g_train = compile(self.g_train) if placement.distributed else self.g_plain
            self.d_train = compile(self.d_train) if placement.distributed else self.d_plain

        self.noise = torch.Generator(self.device).manual_seed(derive_seed(options.seed, placement.rank))
        self.step = 0
        self.best_fid: float | None = None
        self._stop_requested = False
        self._vote_group: Any = None
        self.images_seen = 0

    # -- set-up helpers -------------------------------------------------------------------
    def _optimizer(self, registry: Registry, role: str, network: nn.Module) -> torch.optim.Optimizer:
        choice = self.plan.optimizers[role]
        make = registry.get("optimizer", choice.name).build(choice.settings)
        if not self.train.fused_optimizer:  # the plain per-parameter loop of the reference implementations
            return make(network.parameters(), fused=None, foreach=False)
        return make(network.parameters(), fused=True if self.cuda else None)

    def _backend_flags(self) -> contextlib.AbstractContextManager:
        """TF32 and cuDNN autotuning as this run's blueprint says, set around each step.

        Per step rather than per process, so that benchmark variants in one process differ.
        """
        if not self.cuda:
            return contextlib.nullcontext()
        torch.backends.cuda.matmul.allow_tf32 = self.train.tf32
        deterministic = self.train.deterministic
        return torch.backends.cudnn.flags(enabled=True, benchmark=not deterministic, deterministic=deterministic,
                                          allow_tf32=self.train.tf32)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cuda and self.train.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @staticmethod
    def _no_sync(module: nn.Module, skip: bool) -> contextlib.AbstractContextManager:
        """Under DDP, gradients of all but the last micro-batch need no all-reduce."""
        if skip and isinstance(module, DistributedDataParallel):
            return module.no_sync()
        return contextlib.nullcontext()

    def _latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = torch.randn(n, self.latent_dim, device=self.device, generator=self.noise)
        labels = None
        if self.num_classes > 0:
            labels = torch.randint(0, self.num_classes, (n,), device=self.device, generator=self.noise)
        return z, labels

    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        images, labels = self.stream.next()
        images = images.to(self.device, non_blocking=True)
        if self.cuda and self.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, (labels.to(self.device, non_blocking=True) if self.num_classes > 0 else None)

    # -- one step -------------------------------------------------------------------------
    def train_step(self, *, between: Callable[[], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``plan.d_steps`` discriminator updates, then one generator update, then the EMA; returns both losses.

        A loss is its update's mean over the micro-batches (the last D update's, when there are several).
        ``between`` runs after the D updates (benchmarks time the two halves with it).
        """
        for hook in self.plan.step_hooks:  # update rules' per-step hooks (lr_schedule), pure in the step
            hook(self.step, self.options.steps, {"generator": self.g_opt, "discriminator": self.d_opt})
        with self._backend_flags():
            d_loss = self.discriminator_step()
            if between is not None:
                between()
            g_loss = self.generator_step()
        self.step += 1
        self._update_ema()
        return d_loss, g_loss

    def discriminator_step(self) -> torch.Tensor:
        """``plan.d_steps`` updates of D on real and generated batches; returns the last update's loss."""
        self.generator.train()
        self.discriminator.train()
        self.discriminator.requires_grad_(True)
        for _ in range(self.plan.d_steps):
            self.d_opt.zero_grad(set_to_none=True)
            d_loss = self._accumulate(self._discriminator_loss, self.d_train)
            self.d_opt.step()
        return d_loss

    def generator_step(self) -> torch.Tensor:
        """One update of G through a frozen D (no power iteration, no D gradients); returns the loss."""
        self.discriminator.requires_grad_(False)
        self.g_opt.zero_grad(set_to_none=True)
        g_loss = self._accumulate(self._generator_loss, self.g_train)
        self.g_opt.step()
        self.discriminator.requires_grad_(True)
        return g_loss

    # -- the details of one update ---------------------------------------------------------
    def _accumulate(self, loss_of: Callable[[int, bool], torch.Tensor], module: nn.Module) -> torch.Tensor:
        """Backpropagate ``loss_of(micro, skip_sync)`` over ``train.grad_accumulation`` micro-batches.

        Each micro-batch's gradient is scaled by 1/n, so their sum is the whole batch's; under DDP
        only the last one all-reduces. Returns the mean loss over the micro-batches (detached).
        """
        accumulate = self.train.grad_accumulation
        total: torch.Tensor | None = None
        for micro in range(accumulate):
            skip_sync = micro < accumulate - 1
            loss = loss_of(micro, skip_sync)
            with self._no_sync(module, skip_sync):
                (loss / accumulate).backward()
            total = loss.detach() if total is None else total + loss.detach()
        return total / accumulate  # type: ignore[operator]

    def _discriminator_loss(self, micro: int, skip_sync: bool) -> torch.Tensor:
        """D's loss (regularisers included) on one real and one generated micro-batch."""
        real, labels = self._real_batch()
        z, fake_labels = self._latents(real.shape[0])
        with torch.no_grad(), self._autocast(), _power_iteration_on_first(micro, self.generator):
            fake = self.g_plain(z, fake_labels)
        with (self._autocast(), self._no_sync(self.d_train, skip_sync),
              _power_iteration_on_first(micro, self.discriminator)):
            real_logits, fake_logits = self._discriminator_logits(real, labels, fake, fake_labels)
        d_loss = self.loss.discriminator_loss(real_logits=real_logits.float(), fake_logits=fake_logits.float())
        for regularizer in self.regularizers:
            with self.discriminator.frozen_normalisation():
                d_loss = d_loss + regularizer(
                    discriminator=lambda x, y=labels: self.discriminator(x, y).float(),
                    real=real, fake=fake)
        self.images_seen += real.shape[0] * self.placement.world_size
        return d_loss

    def _discriminator_logits(self, real: torch.Tensor, labels: torch.Tensor | None, fake: torch.Tensor,
                              fake_labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """D's logits on the real and the generated images, in one pass where D allows it."""
        if self.joint_d_pass:
            # One pass over [real; fake]: the power iteration advances once, and σ from
            # the updated u/v normalises both halves, exactly as two passes (the second
            # frozen) would; per-image outputs cannot mix in a batch-independent D.
            both = self.d_train(torch.cat([real, fake]), _cat_labels(labels, fake_labels))
            real_logits, fake_logits = both.split([real.shape[0], fake.shape[0]])
            return real_logits, fake_logits
        real_logits = self.d_train(real, labels)
        # The official code's pass on generated images leaves u/v alone.
        with self.discriminator.frozen_normalisation():
            fake_logits = self.d_plain(fake, fake_labels)
        return real_logits, fake_logits

    def _generator_loss(self, micro: int, skip_sync: bool) -> torch.Tensor:
        """G's loss on one generated micro-batch, through D with its u/v frozen."""
        needs_real = capability(self.loss, "generator_needs_real", kind="loss")
        z, fake_labels = self._latents(self.micro_batch)
        with self._autocast(), self._no_sync(self.g_train, skip_sync):
            with _power_iteration_on_first(micro, self.generator):
                fake = self.g_train(z, fake_labels)
            with self.discriminator.frozen_normalisation():
                fake_logits = self.d_plain(fake, fake_labels)
                extra = {}
                if needs_real:
                    real, labels = self._real_batch()
                    extra["real_logits"] = self.d_plain(real, labels).float()
        return self.loss.generator_loss(fake_logits=fake_logits.float(), **extra)

    @torch.no_grad()
    def _update_ema(self) -> None:
        """Average G's weights into the EMA generator and copy its batch-norm statistics.

        The running statistics are copied (BigGAN-PyTorch's practice): the EMA generator runs no
        training passes of its own, and the live generator's statistics come from nearly the same
        weights; ``--standing-stats`` recomputes them for the EMA weights themselves. Spectral-norm u/v are *not* copied: the live
        ones are singular vectors of the live weights, not of the averaged ones. The EMA generator
        gets its own, converged, right before it is used (``_sampling_generator``).
        """
        if self.ema is None:
            return
        ema_params = list(self.ema.parameters())
        params = list(self.generator.parameters())
        if self.step < self.plan.ema_start:
            torch._foreach_copy_(ema_params, params)
        else:
            torch._foreach_lerp_(ema_params, params, 1.0 - float(self.plan.ema_decay))  # type: ignore[arg-type]
        for ema_buffer, buffer in zip(buffers_outside_spectral_norm(self.ema),
                                      buffers_outside_spectral_norm(self.generator)):
            ema_buffer.copy_(buffer)

    def _sampling_generator(self) -> nn.Module:
        """The generator that samples and evaluates: the EMA one (with converged u/v) when there is one."""
        if self.ema is None:
            return self.generator
        refresh_spectral_norm(self.ema)
        return self.ema

    # -- the run --------------------------------------------------------------------------
    def run(self) -> int:
        """Train to ``options.steps``; returns the step reached."""
        out = self.options.out
        if self.placement.is_main:
            with writing(out, "run folder"):
                out.mkdir(parents=True, exist_ok=True)
        resumed = None
        if self.options.resume:
            resumed = resume_newest(out / "checkpoints", load=self.load_state, map_location=self.device,
                                    report=self.report)
        log = (RunLog(out / "metrics.jsonl", resume_from_step=resumed, note=self._intact_note)
               if self.placement.is_main else None)
        progress = Progress(total=self.options.steps, start=self.step,
                            enabled=self.options.progress and self.placement.is_main)
        fixed_z, fixed_labels = self._fixed_sample_inputs()
        if self.placement.is_main and self.step == 0:  # what training starts from; a resumed run keeps its own
            self._save_samples(fixed_z, fixed_labels, log)
        previous_handlers = self._install_signal_handlers()
        totals = torch.zeros(2, device=self.device)
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        since, counted, seen_at_log = time.perf_counter(), 0, self.images_seen
        first_step = self.step + 1  # the progress line shows this one too, not only every log_every
        try:
            while self.step < self.options.steps:
                d_loss, g_loss = self.train_step()
                losses = torch.stack([d_loss, g_loss])
                finite = torch.isfinite(losses).all()
                first_bad = torch.where((~finite) & (first_bad < 0), self.step, first_bad)
                totals += torch.nan_to_num(losses)
                counted += 1
                last = self.step == self.options.steps
                at_log = self.step % self.train.log_every == 0 or last
                at_checkpoint = self.step % self.train.checkpoint_every == 0 or last
                at_eval = bool(self.train.eval_every) and (self.step % self.train.eval_every == 0 or last)
                stop = self._stop_agreed()
                at_first = self.step == first_step and not at_log and progress.enabled
                if at_log or at_first or at_checkpoint or at_eval or stop or not self.cuda:
                    # Syncs with the GPU: only here, so nothing is ever written after a non-finite loss.
                    self._raise_if_diverged(int(first_bad))
                self._check_skipped()
                if at_log:
                    elapsed = time.perf_counter() - since
                    rate = (self.images_seen - seen_at_log) / max(elapsed, 1e-9)
                    mean = (totals / counted).tolist()
                    if log is not None:
                        log.write(self._record(mean, rate))
                    progress.update(self.step, rate, {"d": mean[0], "g": mean[1]})
                    totals.zero_()
                    since, counted, seen_at_log = time.perf_counter(), 0, self.images_seen
                elif at_first:  # shown only: the logged mean still covers the whole interval
                    rate = (self.images_seen - seen_at_log) / max(time.perf_counter() - since, 1e-9)
                    mean = (totals / counted).tolist()
                    progress.update(self.step, rate, {"d": mean[0], "g": mean[1]})
                if at_eval:
                    self._evaluate(log)
                if at_checkpoint or stop:  # before the samples: a refused sample write loses no progress
                    self._checkpoint()
                if self.placement.is_main and (self.step % self.train.sample_every == 0
                                               or self.step == self.options.steps):
                    self._save_samples(fixed_z, fixed_labels, log)
                if stop:
                    self.report(f"stopped at step {self.step}; continue with --resume")
                    break
        finally:
            progress.finish()
            self._restore_signal_handlers(previous_handlers)
            if log is not None:
                log.close()
        return self.step

    def _stop_agreed(self) -> bool:
        """Whether to stop after this step; under DDP every rank must agree, so ask them all.

        The vote runs over a CPU (gloo) group: it costs microseconds and never waits for the GPU.
        """
        if not self.placement.distributed:
            return self._stop_requested
        if self._vote_group is None:
            self._vote_group = torch.distributed.new_group(backend="gloo")
        return any_rank(self._stop_requested, self.placement, group=self._vote_group)

    def _evaluate(self, log: RunLog | None) -> None:
        """Rank 0 evaluates (EMA generator when there is one) and keeps the best-FID checkpoint."""
        if self.placement.is_main:
            from ..commands.evaluation import evaluate_generator

            network = self._sampling_generator()
            result = evaluate_generator(network, loaded=self.loaded, metrics=list(self.train.eval_metrics),
                                        n=self.train.eval_images, inception=self.train.eval_inception,
                                        device=self.device, progress=False,
                                        generator_label="EMA generator" if self.ema is not None else "generator")
            record = {"event": "evaluation", "step": self.step, **result.values, "protocol": result.protocol}
            if log is not None:
                log.write(record)
            fid = result.values.get("fid")
            if fid is not None and (self.best_fid is None or fid < self.best_fid):
                self.best_fid = fid
                write_best(self.options.out / "checkpoints", dataclasses.replace(self.state(), fid=fid))
                self.report(f"step {self.step}: FID {fid:.3f}, the best so far (checkpoints/best.pt)")
        if self.placement.distributed:
            torch.distributed.barrier()

    def _check_skipped(self) -> None:
        limit = capability(self.stream.dataset, "max_skipped", kind="dataset")
        if limit is not None and self.stream.skipped > limit:
            raise GanforgeError(f"{self.stream.skipped} unreadable images skipped, more than data.max_skipped "
                                f"({limit}): check data.root or raise data.max_skipped")

    def _raise_if_diverged(self, bad_step: int) -> None:
        if bad_step >= 0:
            raise TrainingDiverged(
                f"non-finite loss at step {bad_step}; the last good checkpoint in {self.options.out / 'checkpoints'} "
                "is kept (lower the learning rates or use train.precision=fp32, then --resume)"
            )

    def _record(self, mean: list[float], rate: float) -> dict[str, Any]:
        scalars = {}
        for prefix, network in (("G.", self.generator), ("D.", self.discriminator)):
            for path, module in network.named_modules():
                declared = capability(module, "logged_scalars", kind="layer")
                if callable(declared):
                    scalars.update({f"{prefix}{path}.{name}": float(value.detach())
                                    for name, value in declared().items()})
        return {
            "step": self.step,
            "time": time.time(),
            "d_loss": mean[0],
            "g_loss": mean[1],
            "images_per_s": rate,
            "skipped_images": self.stream.skipped,
            "lr": {"generator": self.g_opt.param_groups[0]["lr"], "discriminator": self.d_opt.param_groups[0]["lr"]},
            "scalars": scalars,  # whatever components declare via logged_scalars(), e.g. attention γ
        }

    def _fixed_sample_inputs(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        generator = torch.Generator().manual_seed(fixed_samples_seed(self.options.seed))
        n = 64
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        if self.num_classes <= 0:
            return z, None
        from ..commands.generation import column_classes
        from .samples import grid_columns

        # one class per grid column (the grid save_grid lays out), whatever the class count
        columns = grid_columns(n, self.num_classes)
        return z, column_classes(n, self.num_classes, columns, device=self.device)

    @torch.no_grad()
    def _save_samples(self, z: torch.Tensor, labels: torch.Tensor | None, log: RunLog | None = None) -> None:
        network = self._sampling_generator()
        was_training = network.training
        network.eval()
        images = torch.cat([network(z[i:i + 16], None if labels is None else labels[i:i + 16])
                            for i in range(0, z.shape[0], 16)])
        network.train(was_training)
        path = self.options.out / "samples" / f"step-{self.step:09d}.png"
        save_grid(images.float().cpu(), path, note=self._intact_note)
        if log is not None:
            log.image_file("samples", path, self.step)  # the grid as written, in TensorBoard's image tab

    def _intact_note(self) -> str:
        """The end of a write error's line: what was kept, and how to go on."""
        folder = self.options.out / "checkpoints"
        kept = list_checkpoints(folder)
        if not kept:
            return "no checkpoint was written"
        return f"the checkpoints in {folder} are intact (newest {kept[-1].name}; fix it, then --resume)"

    # -- checkpoints ----------------------------------------------------------------------
    def _rng_state(self) -> dict[str, Any]:
        """This process's random streams (``seeding.capture_rng``)."""
        return capture_rng(self.noise, self.device if self.cuda else None)

    def state(self, rng_by_rank: list[dict[str, Any]] | None = None) -> CheckpointRecord:
        """Everything a resumed run needs; ``rng_by_rank`` holds every process's random state."""
        return CheckpointRecord(
            step=self.step,
            generator=self.generator.state_dict(),
            discriminator=self.discriminator.state_dict(),
            ema=None if self.ema is None else self.ema.state_dict(),
            g_optimizer=self.g_opt.state_dict(),
            d_optimizer=self.d_opt.state_dict(),
            images_seen=self.images_seen,
            best_fid=self.best_fid,
            rng=rng_by_rank if rng_by_rank is not None else [self._rng_state()],
            data=self.stream.state(),
            blueprint=self.loaded.document,
            blueprint_file=self.loaded.file,
            extra={"target_steps": self.options.steps},  # what --resume without --steps trains to
        )

    def _checkpoint(self) -> None:
        """Called on every rank at the same step: each rank's random state goes into the file."""
        rng_by_rank = [self._rng_state()]
        if self.placement.distributed:
            rng_by_rank = [None] * self.placement.world_size  # type: ignore[list-item]
            torch.distributed.all_gather_object(rng_by_rank, self._rng_state())
        if self.placement.is_main:
            write_checkpoint(self.options.out / "checkpoints", self.state(rng_by_rank),
                             keep=self.train.keep_checkpoints)

    def load_state(self, path: Path, state: CheckpointRecord) -> int:
        """Put a checkpoint (``path``, as ``state()`` built it) back into this run; returns its step."""
        try:
            self.generator.load_state_dict(state.generator)
            self.discriminator.load_state_dict(state.discriminator)
            if self.ema is not None and state.ema is not None:
                self.ema.load_state_dict(state.ema)
            self.g_opt.load_state_dict(state.g_optimizer)
            self.d_opt.load_state_dict(state.d_optimizer)
        except (RuntimeError, KeyError, ValueError) as err:
            raise GanforgeError(f"{path} does not match this blueprint's networks: {err}") from err
        self.step = state.step
        target = state.extra.get("target_steps")
        if not self.options.steps_given and isinstance(target, int) and target != self.options.steps:
            self.options.steps = target
            self.report(f"training to step {target}, the run's --steps (pass --steps to change it)")
        rng_by_rank = state.rng
        restore_rank_rng(rng_by_rank, rank=self.placement.rank, world_size=self.placement.world_size,
                         seed=self.options.seed, step=self.step, noise=self.noise,
                         cuda_device=self.device if self.cuda else None, source=path, report=self.report)
        self.stream.restore(state.data)
        self.images_seen = state.images_seen
        self.best_fid = state.best_fid
        return self.step

    # -- signals --------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict[int, Any]:
        previous = {}

        def request_stop(signum: int, frame: Any) -> None:
            if self._stop_requested:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop_requested = True
            self.report(f"\n{signal.Signals(signum).name}: finishing step {self.step + 1}, then checkpointing")

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, request_stop)
            except ValueError:  # not the main thread
                pass
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _batch_dependent(network: nn.Module) -> bool:
    """Whether an image's output can depend on the other images of its batch.

    Batch norm (in training mode) does; a component that mixes images in another way
    declares it with the class attribute ``batch_dependent = True``.
    """
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) or capability(m, "batch_dependent", kind="layer")
               for m in network.modules())


def _power_iteration_on_first(micro: int, network: nn.Module) -> contextlib.AbstractContextManager:
    """Let ``network``'s spectral-norm u/v advance in the first micro-batch of an update only.

    Gradient accumulation splits one update into several passes over unchanged weights; freezing
    u/v after the first keeps one power iteration per update (as without accumulation) and gives
    every micro-batch the same σ, as one pass over the whole batch would.
    """
    return network.frozen_normalisation() if micro > 0 else contextlib.nullcontext()


def _cat_labels(real: torch.Tensor | None, fake: torch.Tensor | None) -> torch.Tensor | None:
    return None if real is None or fake is None else torch.cat([real, fake])
