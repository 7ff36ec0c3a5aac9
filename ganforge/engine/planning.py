"""Resolving the blueprint's optimisers and update rules into one ``TrainingPlan``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..blueprint.validation import LoadedBlueprint, ResolvedComponents, resolve_components
from ..components.optim.update_rules import OptimizerChoice, TrainingPlan, UpdateRuleConflict

if TYPE_CHECKING:
    from ..registry import Registry


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
