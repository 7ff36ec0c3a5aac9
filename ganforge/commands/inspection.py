"""What ``ganforge inspect`` reports: the assembled networks and the training set-up, as data."""

from __future__ import annotations

from typing import Any

from ..assembly import Assembly, NetworkPlan
from ..engine.planning import TrainingPlan


def describe(assembly: Assembly, plan: TrainingPlan) -> dict[str, Any]:
    bp = assembly.loaded.blueprint
    return {
        "blueprint": assembly.loaded.file,
        "name": bp.name,
        "generator": _network(assembly.generator),
        "discriminator": _network(assembly.discriminator),
        "loss": {"type": bp.loss.type, **bp.loss.settings},
        "regularizers": [{"type": r.type, **r.settings, **({"every": r.every} if r.every > 1 else {})}
                         for r in bp.regularizers],
        "controllers": [{"type": c.type, **c.settings} for c in bp.controllers],
        "latent": {"type": bp.generator.latent.type, "latent_dim": bp.generator.latent_dim,
                   **bp.generator.latent.settings},
        "update_rule": {
            "rules": [{"type": r.type, **r.settings} for r in bp.update_rule],
            "d_steps_per_g_step": plan.d_steps,
            "ema": None if plan.ema_decay is None else {"decay": plan.ema_decay, "start": plan.ema_start},
        },
        "optimizers": {role: {"type": choice.name, **_jsonable(choice.settings)}
                       for role, choice in plan.optimizers.items()},
        "data": {"type": bp.data.type, "resolution": bp.data.resolution, "channels": bp.data.channels,
                 "num_classes": bp.data.num_classes, **_jsonable(bp.data.settings)},
        "train": bp.train.model_dump(),
    }


def _network(net: NetworkPlan) -> dict[str, Any]:
    return {
        "input_shape": list(net.input_shape),
        "output_shape": list(net.output_shape),
        "params": net.params,
        "layers": [
            {"index": layer.index, "component": layer.component, "path": layer.path,
             "output_shape": list(layer.output_shape), "params": layer.params,
             "takes_labels": layer.takes_labels, "context": dict(layer.context),
             "streams": {name: list(shape) for name, shape in layer.streams.items()}}
            for layer in net.layers
        ],
        "context": [] if net.context is None else [
            {"component": producer.component, "path": producer.path, "params": producer.params,
             "provides": {entry: net.context.entries.get(entry, ("shared", None))[1] for entry in producer.context}}
            for producer in net.context.producers
        ],
        "attention": [{"index": layer.index, "resolution": layer.input_shape[1], "channels": layer.input_shape[0]}
                      for layer in net.attention],
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def format_text(report: dict[str, Any]) -> str:
    lines = [f"blueprint {report['blueprint']}" + (f" ({report['name']})" if report["name"] else "")]
    for role in ("generator", "discriminator"):
        net = report[role]
        lines.append("")
        lines.append(f"{role}: input {_shape(net['input_shape'])} → output {_shape(net['output_shape'])}")
        for producer in net.get("context", []):
            provides = ", ".join(entry if size is None else f"{entry} ({size})"
                                 for entry, size in producer["provides"].items())
            lines.append(f"  context: {producer['component']} → {provides}; {producer['params']:,} params")
        lines.append(f"  {'#':>3}  {'component':<22} {'output':>14} {'params':>13}")
        for layer in net["layers"]:
            given = ", ".join(entry if slot is None else f"{entry}[{slot}]" for entry, slot in layer["context"].items())
            carried = ", ".join(f"{name} {_shape(shape)}" for name, shape in layer.get("streams", {}).items())
            lines.append(f"  {layer['index']:>3}  {layer['component']:<22} {_shape(layer['output_shape']):>14} "
                         f"{layer['params']:>13,}" + (f"  ← {given}" if given else "")
                         + (f"  (carries {carried})" if carried else ""))
        lines.append(f"  {'':>3}  {'total':<22} {'':>14} {net['params']:>13,}")
        for att in net["attention"]:
            lines.append(f"  attention: layer {att['index']} at {att['resolution']}×{att['resolution']}, "
                         f"{att['channels']} channels")
        if not net["attention"]:
            lines.append("  attention: none")
    lines.append("")
    lines.append(f"loss: {_component(report['loss'])}")
    for reg in report["regularizers"]:
        lines.append(f"regularizer: {_component(reg)}")
    for controller in report["controllers"]:
        lines.append(f"controller: {_component(controller)}")
    lines.append(f"latent: {_component(report['latent'])}")
    rule = report["update_rule"]
    rules = ", ".join(_component(r) for r in rule["rules"]) or "alternating (default)"
    lines.append(f"update rule: {rules}; {rule['d_steps_per_g_step']} D step(s) per G step"
                 + (f"; G EMA decay {rule['ema']['decay']} from step {rule['ema']['start']}" if rule["ema"] else ""))
    for role, opt in report["optimizers"].items():
        lines.append(f"optimizer ({role}): {_component(opt)}")
    lines.append(f"data: {_component(report['data'])}")
    train = report["train"]
    lines.append(f"train: batch {train['batch_size']}, {train['steps']} steps, precision {train['precision']}")
    return "\n".join(lines)


def _shape(shape: list[int]) -> str:
    return "×".join(str(s) for s in shape)


def _component(spec: dict[str, Any]) -> str:
    settings = ", ".join(f"{k}={_value(v)}" for k, v in spec.items() if k != "type")
    return f"{spec['type']}({settings})" if settings else spec["type"]


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_value(x) for x in v) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)
