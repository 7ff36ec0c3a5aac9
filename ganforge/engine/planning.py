"""Resolving the blueprint's optimisers and update rules into one ``TrainingPlan``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..blueprint.validation import LoadedBlueprint, resolve_component
from ..errors import join_path
from ..components.optim.update_rules import OptimizerChoice, TrainingPlan, UpdateRuleConflict

if TYPE_CHECKING:
    from ..registry import Registry


def plan_training(loaded: LoadedBlueprint, registry: "Registry") -> TrainingPlan:
    bp = loaded.blueprint
    optimizers = {}
    for role in ("generator", "discriminator"):
        spec = getattr(bp.optimizers, role)
        component, settings = resolve_component(registry, spec, kinds=["optimizer"], path=f"optimizers.{role}",
                                                loaded=loaded)
        optimizers[role] = OptimizerChoice(name=component.name, settings=settings, fixed=set(spec.settings))
    plan = TrainingPlan(optimizers=optimizers)
    for index, spec in enumerate(bp.update_rule):
        path = join_path("update_rule", index)
        component, settings = resolve_component(registry, spec, kinds=["update_rule"], path=path, loaded=loaded)
        try:
            component.build(settings).apply(plan)
        except UpdateRuleConflict as err:
            raise loaded.error(str(err), path) from err
    return plan
