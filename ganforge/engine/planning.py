"""Resolving the blueprint's optimisers and update rules into one ``TrainingPlan``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..blueprint.validation import LoadedBlueprint, ResolvedComponents, resolve_components
from ..components.optim.update_rules import UpdateRuleConflict

if TYPE_CHECKING:
    from ..registry import Registry


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
    ema_buffers: str = "copy"  # "copy" or "average" (the ema rule's ``buffers``)
    set_by: dict[str, str] = field(default_factory=dict)  # plan field → rule that set it
    step_hooks: list[StepHook] = field(default_factory=list)  # called before every step, in order


def plan_training(loaded: LoadedBlueprint, registry: "Registry",
                  components: ResolvedComponents | None = None) -> TrainingPlan:
    """The plan the blueprint's update rules make; ``components`` (the assembly's) saves resolving again."""
    bp = loaded.blueprint
    components = resolve_components(loaded, registry) if components is None else components
    optimizers = {}
    for role in ("generator", "discriminator"):
        resolved = components.optimizers[role]
        optimizers[role] = OptimizerChoice(name=resolved.component.name, settings=resolved.settings,
                                           fixed=set(getattr(bp.optimizers, role).settings))
    plan = TrainingPlan(optimizers=optimizers)
    for rule in components.update_rules:
        try:
            rule.build().apply(plan)
        except UpdateRuleConflict as err:
            raise loaded.error(str(err), rule.path) from err
    return plan
