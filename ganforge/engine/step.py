"""The GAN update: ``plan.d_steps`` discriminator updates, one generator update, then the EMA.

Nothing here knows an architecture: the loss, regularisers and update plan come from the
blueprint, and the networks are opaque ``(x, labels) -> tensor`` modules. Device, precision,
DDP and compile come from the ``Runtime``.
"""

from __future__ import annotations

import contextlib
import copy
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ..assembly import Network, tagged_parameters
from ..components.layers.spectral_norm import buffers_outside_spectral_norm, refresh_spectral_norm
from ..contracts import batch_statistics, capability
from ..records import DiscriminatorOutput, GeneratorPass, LabelPair
from .calls import Lazy, ScheduledRegularizer, adapt_loss, attach_controllers, call_with
from .parameter_groups import apply_multipliers, parameter_groups
from ..memory_estimate import check_training
from .data_stream import DataStream
from .planning import TrainingPlan
from .runtime import Runtime
from .seeding import derive_seed

if TYPE_CHECKING:
    from ..assembly import Assembly
    from ..registry import Registry


class GANUpdate:
    """Networks, optimisers, loss, regularisers, EMA and the data they train on, for one process."""

    def __init__(self, *, assembly: "Assembly", plan: TrainingPlan, registry: "Registry", dataset: Any,
                 runtime: Runtime, seed: int, total_steps: Callable[[], int] = lambda: 10**9) -> None:
        self.loaded = assembly.loaded
        bp = self.loaded.blueprint
        self.train, self.plan, self.runtime = bp.train, plan, runtime
        self.device = runtime.device
        self.num_classes = bp.data.num_classes
        self.latent_dim = bp.generator.latent_dim
        placement = runtime.placement
        self.micro_batch = _micro_batch(self.loaded, placement.world_size)
        self.stream = DataStream(dataset, batch_size=self.micro_batch, seed=seed, rank=placement.rank,
                                 world_size=placement.world_size, num_workers=self.train.num_workers,
                                 pin_memory=runtime.cuda)
        check_training(assembly, self.device)  # both networks, their gradients and optimiser state fit
        generator = runtime.place(assembly.generator.build(self.device))
        discriminator = runtime.place(assembly.discriminator.build(self.device))
        self.ema = None if plan.ema_decay is None else copy.deepcopy(generator).eval().requires_grad_(False)

        # Real and generated images share one D pass when nothing in D mixes images of a batch.
        self.joint_d_pass = self.train.joint_d_pass and not batch_dependent(discriminator)
        components = assembly.components
        self.latent = assembly.generator.latent  # the draws of every training step
        self.loss = adapt_loss(components.loss)
        self.regularizers = [ScheduledRegularizer(resolved.build(), every=spec.every, path=resolved.path)
                             for resolved, spec in zip(components.regularizers, bp.regularizers)]
        self.controllers = {resolved.path: resolved.build() for resolved in components.controllers}
        attach_controllers(self.controllers, components.controllers, (generator, discriminator))
        self.g_opt = runtime.optimizer(self._make_optimizer(registry, "generator"),
                                       parameter_groups(generator, bp.optimizers.generator.groups))
        self.d_opt = runtime.optimizer(self._make_optimizer(registry, "discriminator"),
                                       parameter_groups(discriminator, bp.optimizers.discriminator.groups))
        apply_multipliers(self.g_opt)
        apply_multipliers(self.d_opt)
        self.g, self.d = runtime.views(generator), runtime.views(discriminator)

        self.noise = torch.Generator(self.device).manual_seed(derive_seed(seed, placement.rank))
        self._last_real: DiscriminatorOutput | None = None  # D on the last D update's real images (feedback)
        self._real_outputs: list[DiscriminatorOutput] = []
        self.step = 0
        self.total_steps = total_steps  # what learning-rate schedules count towards (the run's --steps)
        self.images_seen = 0

    @property
    def generator(self) -> nn.Module:
        return self.g.module

    @property
    def discriminator(self) -> nn.Module:
        return self.d.module

    def _make_optimizer(self, registry: "Registry", role: str) -> Callable[..., torch.optim.Optimizer]:
        choice = self.plan.optimizers[role]
        return registry.get("optimizer", choice.name).build(choice.settings)

    # -- one step -------------------------------------------------------------------------
    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole step (schedules, D updates, G update, EMA); returns D's and G's losses.

        A loss is its update's mean over the micro-batches (the last D update's, when there are several).
        """
        self.begin_step()
        d_loss = self.d_update()
        g_loss = self.g_update()
        self.end_step({"discriminator": d_loss, "generator": g_loss})
        return d_loss, g_loss

    def begin_step(self) -> None:
        for hook in self.plan.step_hooks:  # update rules' per-step hooks (lr_schedule), pure in the step
            hook(self.step, self.total_steps(), {"generator": self.g_opt, "discriminator": self.d_opt})

    def end_step(self, losses: dict[str, torch.Tensor] | None = None) -> None:
        """Feedback to every component that asks for it (ADA's controller), then the step count and the EMA."""
        observed = {"step": self.step, "losses": losses or {}, "real": self._last_real}
        for component in self.feedback_components():
            call_with(component.feedback, observed)
        self.step += 1
        self._update_ema()

    def stateful_components(self) -> dict[str, Any]:
        """Components beside the networks whose training state goes into checkpoints, by blueprint key."""
        found = {"loss": self.loss, **{r.path: r.regularizer for r in self.regularizers}, **self.controllers}
        return {path: c for path, c in found.items()
                if callable(getattr(c, "state_dict", None)) and callable(getattr(c, "load_state_dict", None))}

    def feedback_components(self) -> list[Any]:
        """Every component with a ``feedback`` method: loss, regularisers, controllers, network modules."""
        found = [self.loss, *(r.regularizer for r in self.regularizers), *self.controllers.values()]
        out = [c for c in found if callable(getattr(c, "feedback", None))]
        for network in (self.generator, self.discriminator):
            out += [m for m in network.modules() if capability(m, "feedback", kind="layer") is not None]
        return out

    def d_update(self) -> torch.Tensor:
        """``plan.d_steps`` updates of D on real and generated batches; returns the last update's loss."""
        self.generator.train()
        self.discriminator.train()
        self.discriminator.requires_grad_(True)
        with self.runtime.backend_flags():
            for _ in range(self.plan.d_steps):
                self.d_opt.zero_grad(set_to_none=True)
                self._real_outputs = []
                d_loss = self._accumulate(self._discriminator_loss, self.d.update)
                self.d_opt.step()
        self._last_real = _concat(self._real_outputs)
        return d_loss

    def g_update(self) -> torch.Tensor:
        """One update of G through a frozen D (no power iteration, no D gradients); returns the loss."""
        self.discriminator.requires_grad_(False)
        with self.runtime.backend_flags():
            self.g_opt.zero_grad(set_to_none=True)
            g_loss = self._accumulate(self._generator_loss, self.g.update)
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
            with self.runtime.no_sync(module, skip_sync):
                (loss / accumulate).backward()
            total = loss.detach() if total is None else total + loss.detach()
        return total / accumulate  # type: ignore[operator]

    def _discriminator_loss(self, micro: int, skip_sync: bool) -> torch.Tensor:
        """D's loss (regularisers included) on one real and one generated micro-batch."""
        real, labels = self.real_batch()
        z, fake_labels, draws = self.draw(real.shape[0])
        with torch.no_grad(), self.runtime.autocast(), _power_iteration_on_first(micro, self.generator):
            fake = self.g.plain(z, fake_labels, **draws)
        with (self.runtime.autocast(), self.runtime.no_sync(self.d.update, skip_sync),
              _power_iteration_on_first(micro, self.discriminator)):
            real_out, fake_out = self._discriminator_outputs(real, labels, fake, fake_labels)
        pair = LabelPair(real=labels, fake=fake_labels)
        real_out, fake_out = real_out.float(), fake_out.float()
        self._real_outputs.append(real_out.detach())
        d_loss = self.loss.discriminator_loss(real=real_out, fake=fake_out, labels=pair)
        due = [r for r in self.regularizers if r.network == "discriminator" and r.due(self.step)]
        if due:
            def outputs(x: torch.Tensor, y: torch.Tensor | None = labels) -> DiscriminatorOutput:
                return DiscriminatorOutput.of(self.discriminator(x, y)).float()

            available = {"step": self.step, "labels": pair, "rng": self.noise, "real": real, "fake": fake,
                         "real_outputs": real_out, "fake_outputs": fake_out,  # this micro-batch's, with gradients
                         "discriminator": lambda x: outputs(x).logit, "discriminator_outputs": outputs,
                         "parameters": Lazy(lambda: tagged_parameters(self.discriminator))}
            for regularizer in due:
                with self.discriminator.frozen_normalisation():
                    d_loss = d_loss + regularizer(available)
        self.images_seen += real.shape[0] * self.runtime.placement.world_size
        return d_loss

    def _discriminator_outputs(self, real: torch.Tensor, labels: torch.Tensor | None, fake: torch.Tensor,
                               fake_labels: torch.Tensor | None) -> tuple[DiscriminatorOutput, DiscriminatorOutput]:
        """D's outputs on the real and the generated images, in one pass where D allows it."""
        if self.joint_d_pass:
            # One pass over [real; fake]: the power iteration advances once, and σ from
            # the updated u/v normalises both halves, exactly as two passes (the second
            # frozen) would; per-image outputs cannot mix in a batch-independent D.
            both = DiscriminatorOutput.of(self.d.update(torch.cat([real, fake]), _cat_labels(labels, fake_labels)))
            real_out, fake_out = both.split([real.shape[0], fake.shape[0]])
            return real_out, fake_out
        real_out = DiscriminatorOutput.of(self.d.update(real, labels))
        # The official SAGAN code's pass on generated images leaves u/v alone (model.py:274-275, ops.py:170).
        with self.discriminator.frozen_normalisation():
            fake_out = DiscriminatorOutput.of(self.d.plain(fake, fake_labels))
        return real_out, fake_out

    def _generator_loss(self, micro: int, skip_sync: bool) -> torch.Tensor:
        """G's loss (its regularisers included) on one generated micro-batch, through D with its u/v frozen."""
        needs_real = capability(self.loss, "generator_needs_real", kind="loss")
        z, fake_labels, draws = self.draw(self.micro_batch)
        due = [r for r in self.regularizers if r.network == "generator" and r.due(self.step)]
        with self.runtime.autocast(), self.runtime.no_sync(self.g.update, skip_sync):
            with _power_iteration_on_first(micro, self.generator):
                fake = self.g.update(z, fake_labels, **draws)
            with self.discriminator.frozen_normalisation():
                fake_out = DiscriminatorOutput.of(self.d.plain(fake, fake_labels)).float()
                real_out = None
                if needs_real:
                    real, labels = self.real_batch()
                    real_out = DiscriminatorOutput.of(self.d.plain(real, labels)).float()
        pair = LabelPair(real=None if real_out is None else labels, fake=fake_labels)
        g_loss = self.loss.generator_loss(fake=fake_out, real=real_out, labels=pair)
        if due:
            available = {"step": self.step, "labels": pair, "rng": self.noise, "fake": fake,
                         "generate": self._generate_with_context,
                         "parameters": Lazy(lambda: tagged_parameters(self.generator))}
            for regularizer in due:
                with self.runtime.autocast(), self.generator.frozen_normalisation():
                    g_loss = g_loss + regularizer(available)
        return g_loss

    def _generate_with_context(self, n: int) -> GeneratorPass:
        """A fresh generator pass of ``n`` images that keeps its context (styles) for a regulariser.

        It runs the network itself, as D's regularisers do: not compiled (a compiled graph neither
        returns the context it differentiated through nor supports double backward) and outside DDP
        (its gradients join the update's one backward pass, so each parameter's gradient, both
        passes summed, is all-reduced once by the update view's hooks).
        """
        z, labels, draws = self.draw(n)
        images, context = self.generator(z, labels, return_context=True, **draws)
        return GeneratorPass(images=images, context=context, labels=labels)

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """The latent component's draws for ``n`` images (z, and the rest G reads), then their classes."""
        draws = self.latent.draw(n, generator=self.noise, device=self.device)
        z = draws.pop("z")
        labels = None
        if self.num_classes > 0:
            labels = torch.randint(0, self.num_classes, (n,), device=self.device, generator=self.noise)
        wanted = self.generator.consumes if isinstance(self.generator, Network) else frozenset()
        return z, labels, {k: v for k, v in draws.items() if k in wanted}

    def latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        z, labels, _ = self.draw(n)
        return z, labels

    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        images, labels = self.stream.next()
        return self.runtime.to_device(images, labels if self.num_classes > 0 else None)

    # -- the EMA generator ----------------------------------------------------------------
    @torch.no_grad()
    def _update_ema(self) -> None:
        """Average G's weights into the EMA generator; copy or average its buffers (the ``ema`` rule's ``buffers``).

        ``copy`` (the default): the floating-point buffers (batch-norm running statistics) are the
        live generator's, as in stylegan2-ada-pytorch (training/training_loop.py:304-305): the EMA
        generator runs no training passes of its own, so the live statistics, taken from nearly the
        same weights, are the nearest it has; ``--standing-stats`` recomputes them for the EMA weights
        themselves. ``average``: they get the weights' decay, as BigGAN-PyTorch's ``utils.ema``
        averages every state-dict entry (utils.py:638-640), buffers included. Before ``ema_start``
        both copy (BigGAN-PyTorch pegs the average to the weights there, utils.py:633-634).
        Integer buffers (batch norm's ``num_batches_tracked``, a count) are copied in both, since an
        average of counts means nothing. Spectral-norm u/v are neither (BigGAN-PyTorch averages its
        u0/sv0): the live ones are singular vectors of the live weights, not of the averaged ones,
        so the EMA generator gets its own, exact ones right before it is used (``sampling_generator``).
        """
        if self.ema is None:
            return
        ema_params = list(self.ema.parameters())
        params = list(self.generator.parameters())
        averaging = self.step >= self.plan.ema_start
        weight = 1.0 - float(self.plan.ema_decay)  # type: ignore[arg-type]
        if averaging:
            torch._foreach_lerp_(ema_params, params, weight)
        else:
            torch._foreach_copy_(ema_params, params)
        for ema_buffer, buffer in zip(buffers_outside_spectral_norm(self.ema),
                                      buffers_outside_spectral_norm(self.generator)):
            if averaging and self.plan.ema_buffers == "average" and buffer.is_floating_point():
                ema_buffer.lerp_(buffer, weight)
            else:
                ema_buffer.copy_(buffer)

    def sampling_generator(self) -> nn.Module:
        """The generator that samples and evaluates: the EMA one (with converged u/v) when there is one."""
        if self.ema is None:
            return self.generator
        refresh_spectral_norm(self.ema)
        return self.ema


def _micro_batch(loaded: Any, world_size: int) -> int:
    """Images per process and micro-batch; refuses a batch that does not split evenly."""
    train = loaded.blueprint.train
    per_process = train.batch_size // world_size
    if per_process * world_size != train.batch_size:
        raise loaded.error(f"batch size {train.batch_size} does not split over {world_size} processes",
                           "train.batch_size")
    micro = per_process // train.grad_accumulation
    if micro * train.grad_accumulation != per_process or micro < 1:
        raise loaded.error(f"{per_process} images per process do not split into "
                           f"{train.grad_accumulation} micro-batches", "train.grad_accumulation")
    return micro


def batch_dependent(network: nn.Module) -> bool:
    """Whether an image's output can depend on the other images of its batch.

    A normalisation with batch statistics does (``contracts.batch_statistics``); a component that
    mixes images in another way declares it with the class attribute ``batch_dependent = True``.
    """
    return any(batch_statistics(m) or capability(m, "batch_dependent", kind="layer") for m in network.modules())


def _power_iteration_on_first(micro: int, network: nn.Module) -> contextlib.AbstractContextManager:
    """Let ``network``'s spectral-norm u/v advance in the first micro-batch of an update only.

    Gradient accumulation splits one update into several passes over unchanged weights; freezing
    u/v after the first keeps one power iteration per update (as without accumulation) and gives
    every micro-batch the same σ, as one pass over the whole batch would.
    """
    return network.frozen_normalisation() if micro > 0 else contextlib.nullcontext()


def _cat_labels(real: torch.Tensor | None, fake: torch.Tensor | None) -> torch.Tensor | None:
    return None if real is None or fake is None else torch.cat([real, fake])


def _concat(outputs: list[DiscriminatorOutput]) -> DiscriminatorOutput | None:
    """The micro-batches' outputs as one record (what feedback sees of the update)."""
    if not outputs:
        return None
    if len(outputs) == 1:
        return outputs[0]
    return DiscriminatorOutput(logit=torch.cat([o.logit for o in outputs]),
                               extras={k: torch.cat([o.extras[k] for o in outputs]) for k in outputs[0].extras})

