"""Update rules: how G and D take turns and at what rates.

A rule edits a ``TrainingPlan``; rules listed together in a blueprint apply in order,
so ``ttur`` (learning rates) and ``n_critic`` (D steps per G step) combine. A rule that must act
during training appends a ``StepHook`` to ``plan.step_hooks``: the engine calls each one before
every training step (``lr_schedule`` in ``schedules.py`` is one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Mapping

from pydantic import Field

from ...registry import register

Beta = Annotated[float, Field(ge=0, lt=1)]
PositiveFloat = Annotated[float, Field(gt=0)]


@dataclass
class OptimizerChoice:
    """A registered optimiser and its settings, for one network."""

    name: str
    settings: dict[str, Any]
    fixed: set[str] = field(default_factory=set)  # keys the blueprint's optimizers section set itself


StepHook = Callable[[int, int, Mapping[str, Any]], None]
"""``hook(step, total_steps, optimizers)``, called before every training step.

``step`` counts the steps already taken (0 for the first), ``total_steps`` is the run's length
(``train.steps`` or ``--steps``), ``optimizers`` maps ``"generator"``/``"discriminator"`` to the
``torch.optim.Optimizer``. A hook should set state as a pure function of ``step`` (e.g.
``group["lr"] = base * factor(step)``), never accumulate it: then ``--resume`` is exact.
"""


@dataclass
class TrainingPlan:
    """What the engine needs to schedule updates; no architecture in here."""

    optimizers: dict[str, OptimizerChoice]
    d_steps: int = 1
    ema_decay: float | None = None
    ema_start: int = 0
    set_by: dict[str, str] = field(default_factory=dict)  # plan field → rule that set it
    step_hooks: list[StepHook] = field(default_factory=list)  # called before every step, in order


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
    """Exponential moving average of G's weights (BigGAN-PyTorch, MMGeneration); sampling uses the average."""

    def __init__(self, *, decay: Annotated[float, Field(gt=0, lt=1)] = 0.9999,
                 start: Annotated[int, Field(ge=0)] = 2000) -> None:
        self.decay, self.start = decay, start

    def apply(self, plan: TrainingPlan) -> None:
        plan.ema_decay, plan.ema_start = self.decay, self.start
        plan.set_by["ema"] = "ema"
