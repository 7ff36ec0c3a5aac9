"""Learning-rate schedules: update rules that act every step through ``plan.step_hooks``.

``lr_schedule`` multiplies each optimiser's learning rate (the one the blueprint's ``optimizers``
section or ``ttur`` chose) by ``lr_factor(step)``: a linear warm-up, then a linear decay to a
floor, SNGAN's "linear decay to 0 over the run". The factor is a pure function of the step
and the base rate is read from the plan, not from the optimiser, so a resumed run sets exactly
the rates the uninterrupted run would have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Mapping

from pydantic import Field

from ...registry import register
from .update_rules import UpdateRuleConflict

if TYPE_CHECKING:
    from ...engine.planning import TrainingPlan

ROLES = ("generator", "discriminator")


def lr_factor(step: int, *, total_steps: int, warmup_steps: int = 0, decay_start: int | None = None,
              decay_end: int | None = None, floor: float = 0.0) -> float:
    """The multiplier of the base learning rate for step ``step`` (0 = the first update).

    Warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps, so the first update
    is not wasted and step ``warmup_steps - 1`` runs at the full rate. Decay: from ``decay_start``
    (default: the end of the warm-up) the factor falls linearly, ``1 - (1 - floor) * (step - start)
    / (end - start)``, reaching ``floor`` at ``decay_end`` (default: ``total_steps``) and staying
    there. With ``floor = 0`` and ``end = total_steps`` the last update runs at ``1 / (end - start)``
    of the base rate, as in SNGAN's Chainer ``LinearShift``.
    """
    factor = 1.0
    if step < warmup_steps:
        factor = (step + 1) / warmup_steps
    start = warmup_steps if decay_start is None else decay_start
    end = total_steps if decay_end is None else decay_end
    if end > start and step >= start:
        progress = min(1.0, (step - start) / (end - start))
        factor *= 1.0 - (1.0 - floor) * progress
    return factor


@register("update_rule", "lr_schedule")
class LRSchedule:
    """Linear learning-rate warm-up, then linear decay to a floor (SNGAN's decay to 0), set every step."""

    def __init__(self, *, warmup_steps: Annotated[int, Field(ge=0)] = 0,
                 decay_start: Annotated[int, Field(ge=0)] | None = None,
                 decay_end: Annotated[int, Field(ge=1)] | None = None,
                 floor: Annotated[float, Field(ge=0, le=1)] = 0.0,
                 networks: Literal["both", "generator", "discriminator"] = "both") -> None:
        if decay_start is not None and decay_start < warmup_steps:
            raise UpdateRuleConflict(f"decay_start {decay_start} is inside the warm-up ({warmup_steps} steps): "
                             "decay starts once the warm-up has ended")
        start = warmup_steps if decay_start is None else decay_start
        if decay_end is not None and decay_end <= start:
            raise UpdateRuleConflict(f"decay_end {decay_end} must come after the decay's start (step {start})")
        self.warmup_steps, self.decay_start, self.decay_end, self.floor = warmup_steps, decay_start, decay_end, floor
        self.roles = ROLES if networks == "both" else (networks,)

    def factor(self, step: int, total_steps: int) -> float:
        return lr_factor(step, total_steps=total_steps, warmup_steps=self.warmup_steps,
                         decay_start=self.decay_start, decay_end=self.decay_end, floor=self.floor)

    def apply(self, plan: TrainingPlan) -> None:
        if "lr_schedule" in plan.set_by:
            raise UpdateRuleConflict("a learning-rate schedule is already set; list lr_schedule once")
        for role in self.roles:
            choice = plan.optimizers[role]
            if "lr" not in choice.settings:
                raise UpdateRuleConflict(f"lr_schedule needs an optimiser with 'lr'; {choice.name!r} has none")

        def set_rates(step: int, total_steps: int, optimizers: Mapping[str, Any]) -> None:
            factor = self.factor(step, total_steps)
            for role in self.roles:
                base = float(plan.optimizers[role].settings["lr"])  # read now: rules after this one may set it
                for group in optimizers[role].param_groups:
                    group["lr"] = base * factor * group.get("lr_multiplier", 1.0)  # a tagged group's own rate

        plan.step_hooks.append(set_rates)
        plan.set_by["lr_schedule"] = "lr_schedule"
