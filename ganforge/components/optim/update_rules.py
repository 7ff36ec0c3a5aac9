"""Update rules: how G and D take turns and at what rates.

A rule edits the engine's ``TrainingPlan`` (``ganforge.engine.planning``); rules listed together in a blueprint apply in order,
so ``ttur`` (learning rates) and ``n_critic`` (D steps per G step) combine. A rule that must act
during training appends a ``StepHook`` to ``plan.step_hooks``: the engine calls each one before
every training step (``lr_schedule`` in ``schedules.py`` is one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

if TYPE_CHECKING:
    from ...engine.planning import TrainingPlan

from pydantic import Field

from ...registry import register

Beta = Annotated[float, Field(ge=0, lt=1)]
PositiveFloat = Annotated[float, Field(gt=0)]


class UpdateRuleConflict(ValueError):
    """Raised by a rule whose settings contradict the blueprint elsewhere."""


@register("update_rule", "ttur")
class TTUR:
    """Two time-scale update rule (Heusel et al. 2017): separate Adam learning rates for G and D."""

    def __init__(self, *, g_lr: PositiveFloat = 1e-4, d_lr: PositiveFloat = 4e-4,
                 betas: tuple[Beta, Beta] = (0.0, 0.999)) -> None:
        self.g_lr, self.d_lr, self.betas = g_lr, d_lr, tuple(betas)

    def apply(self, plan: TrainingPlan) -> None:
        for role, lr in (("generator", self.g_lr), ("discriminator", self.d_lr)):
            choice = plan.optimizers[role]
            for key in ("lr", "betas"):
                if key in choice.fixed:
                    raise UpdateRuleConflict(
                        f"optimizers.{role}.{key} is also set; ttur sets learning rates and betas, "
                        "so set them in one place"
                    )
                if key not in choice.settings:
                    raise UpdateRuleConflict(f"ttur needs an optimiser with {key!r}; {choice.name!r} has none")
            choice.settings.update(lr=lr, betas=self.betas)
        plan.set_by["lr"] = "ttur"


@register("update_rule", "n_critic")
class NCritic:
    """Several discriminator steps per generator step (WGAN uses 5)."""

    def __init__(self, *, d_steps: Annotated[int, Field(ge=1)] = 5) -> None:
        self.d_steps = d_steps

    def apply(self, plan: TrainingPlan) -> None:
        if "d_steps" in plan.set_by:
            raise UpdateRuleConflict(f"D steps per G step already set by {plan.set_by['d_steps']}")
        plan.d_steps = self.d_steps
        plan.set_by["d_steps"] = "n_critic"


@register("update_rule", "ema")
class EMA:
    """Exponential moving average of G's weights (BigGAN-PyTorch, MMGeneration); sampling uses the average.

    ``buffers`` says what the EMA generator's floating-point buffers (batch-norm running mean and
    variance, StyleGAN's ``w_avg``) follow: ``copy`` (the default, and ganforge's behaviour before
    the setting existed) copies the live generator's, as stylegan2-ada-pytorch does
    (training/training_loop.py:304-305); ``average`` averages them with the weights' decay, as
    BigGAN-PyTorch's ``utils.ema`` does with every state-dict entry (utils.py:638-640). Integer
    buffers (``num_batches_tracked``) are copied in both; spectral-norm u/v in neither (see
    ``GANUpdate._update_ema``).
    """

    def __init__(self, *, decay: Annotated[float, Field(gt=0, lt=1)] = 0.9999,
                 start: Annotated[int, Field(ge=0)] = 2000,
                 buffers: Literal["copy", "average"] = "copy") -> None:
        self.decay, self.start, self.buffers = decay, start, buffers

    def apply(self, plan: TrainingPlan) -> None:
        plan.ema_decay, plan.ema_start, plan.ema_buffers = self.decay, self.start, self.buffers
        plan.set_by["ema"] = "ema"
