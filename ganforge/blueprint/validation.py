"""From file to validated blueprint: load, override, type-check, and check every component."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import BlueprintError, RegistryError, join_path
from .loading import Origins, load_with_extends, origin_of
from .overrides import apply_overrides
from .schema import Blueprint, ComponentSpec

if TYPE_CHECKING:
    import pydantic

    from ..registry import Component, Registry


@dataclass
class LoadedBlueprint:
    """A validated blueprint plus where each of its keys came from."""

    blueprint: Blueprint
    file: str
    document: dict[str, Any]
    origins: Origins = field(default_factory=dict)

    def error(self, message: str, path: str, *, across_keys: bool = False) -> BlueprintError:
        """A BlueprintError attributed to the file that set ``path``.

        A conflict between keys (``across_keys``) may come from any file of an ``extends`` chain,
        so it names the blueprint the user gave.
        """
        file = self.file if across_keys else origin_of(path, self.origins, self.file)
        return BlueprintError(message, path=path, file=file)


    def has_component(self, required: str) -> bool:
        """Whether the blueprint names the component ``"kind:name"`` (a ``requires`` entry)."""
        from ..contracts import KIND_TABLE

        kind, _, name = required.partition(":")
        found: list[Any] = []
        for slot in KIND_TABLE[kind].blueprint if kind in KIND_TABLE else ():
            value: Any = self.blueprint
            for part in slot.split("."):
                value = getattr(value, part, None)
            found += value if isinstance(value, list) else [value]
        names = [item if isinstance(item, str) else getattr(item, "type", "") for item in found if item is not None]
        return any(type_name.rpartition(":")[2] == name for type_name in names)


def load_blueprint(path: str | Path, overrides: Iterable[str] = ()) -> LoadedBlueprint:
    """Read, merge ``extends``, apply ``--set`` overrides and validate the section structure."""
    import pydantic

    path = Path(path)
    document, origins = load_with_extends(path)
    document = apply_overrides(document, list(overrides), origins)
    return validate_document(document, file=str(path), origins=origins)


def validate_document(document: dict[str, Any], *, file: str, origins: Origins | None = None) -> LoadedBlueprint:
    """Validate an already merged document (e.g. the resolved blueprint stored in a checkpoint)."""
    import pydantic

    origins = origins or {}
    try:
        blueprint = Blueprint.model_validate(document)
    except pydantic.ValidationError as err:
        raise from_validation_error(err, origins=origins, default_file=file, model=Blueprint) from None
    return LoadedBlueprint(blueprint=blueprint, file=file, document=document, origins=origins)


def from_validation_error(err: "pydantic.ValidationError", *, origins: Origins, default_file: str,
                          prefix: str = "", model: type | None = None) -> BlueprintError:
    """The first pydantic error as a BlueprintError at its dotted path (later ones counted).

    ``model`` is what was validated: an unknown key then suggests the closest known keys of its
    section (``train.step: unknown key; did you mean 'train.steps'?``), as unknown component
    names do.
    """
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = [part for part in first["loc"] if not (isinstance(part, str) and part.startswith("function-"))]
    path = join_path(prefix, *loc)
    message = _describe(first)
    if first.get("type") == "extra_forbidden" and model is not None and loc and isinstance(loc[-1], str):
        from ..registry import close_matches, did_you_mean

        matches = close_matches(loc[-1], _keys_at(model, loc[:-1]))
        message += did_you_mean(join_path(prefix, *loc[:-1], match) for match in matches)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return BlueprintError(message, path=path, file=origin_of(path, origins, default_file))


def _keys_at(model: type, loc: list[str | int]) -> list[str]:
    """The keys the pydantic model found by following ``loc`` from ``model`` accepts ([] if unknown)."""
    import typing

    import pydantic

    def model_in(annotation: Any) -> type | None:
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            return annotation
        for arg in typing.get_args(annotation):  # Optional[X], list[X], X | None
            found = model_in(arg)
            if found is not None:
                return found
        return None

    current: type | None = model
    for part in loc:
        if isinstance(part, int):
            continue  # a list index: model_in already looked inside list[X]
        fields = current.model_fields if current is not None else {}
        if part not in fields:
            return []
        current = model_in(fields[part].annotation)
    return list(current.model_fields) if current is not None else []


def _describe(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing required key"
    value = error.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a mapping"
    message = error.get("msg", "invalid value")
    message = message.removeprefix("Value error, ")
    return f"{message} (got {shown})"


def resolve_component(registry: "Registry", spec: ComponentSpec, *, kinds: Iterable[str], path: str,
                      loaded: LoadedBlueprint, defaults: dict[str, Any] | None = None,
                      ) -> tuple["Component", dict[str, Any]]:
    """Find ``spec.type`` among ``kinds`` and validate its settings; errors carry ``path``."""
    import pydantic

    kinds = tuple(kinds)
    try:
        component = registry.find(spec.type, kinds) if len(kinds) > 1 else registry.get(kinds[0], spec.type)
    except RegistryError as err:
        raise loaded.error(str(err), join_path(path, "type")) from err
    try:  # settings under a former name (renamed in the registry) move to the current one, with a warning
        settings = component.upgrade_settings(spec.settings)
        if defaults:
            known = {**component.schema.model_fields, **component.renamed_settings}
            settings = {**component.upgrade_settings({k: v for k, v in defaults.items() if k in known}), **settings}
    except RegistryError as err:
        raise loaded.error(str(err), path) from err
    try:
        validated = component.validate(settings)
    except pydantic.ValidationError as err:
        raise from_validation_error(err, origins=loaded.origins, default_file=loaded.file, prefix=path,
                                    model=component.schema) from None
    return component, validated


@dataclass(frozen=True)
class Resolved:
    """One component the blueprint names, found in the registry, with its validated settings."""

    component: "Component"
    settings: dict[str, Any]
    path: str

    def build(self, context: dict[str, Any] | None = None) -> Any:
        return self.component.build(self.settings, context)


@dataclass(frozen=True)
class ResolvedComponents:
    """Every non-network component of a blueprint, resolved once (networks: ``assembly``)."""

    loss: Resolved
    regularizers: tuple[Resolved, ...]
    update_rules: tuple[Resolved, ...]
    optimizers: dict[str, Resolved]
    inits: dict[str, Resolved]
    metrics: tuple[Resolved, ...]
    dataset: Resolved
    latent: Resolved | None = None
    controllers: tuple[Resolved, ...] = ()


def resolve_components(loaded: LoadedBlueprint, registry: "Registry") -> ResolvedComponents:
    """Find and validate every non-network component the blueprint names; errors carry the key."""
    bp = loaded.blueprint

    def resolve(spec: ComponentSpec, kind: str, path: str) -> Resolved:
        return _resolve_one(registry, spec, kind=kind, path=path, loaded=loaded)

    loss = resolve(bp.loss, "loss", "loss")
    regularizers = tuple(resolve(spec, "regularizer", join_path("regularizers", i))
                         for i, spec in enumerate(bp.regularizers))
    update_rules = tuple(resolve(spec, "update_rule", join_path("update_rule", i))
                         for i, spec in enumerate(bp.update_rule))
    optimizers, inits = {}, {}
    for role in ("generator", "discriminator"):
        optimizers[role] = resolve(getattr(bp.optimizers, role), "optimizer", f"optimizers.{role}")
        inits[role] = resolve(getattr(bp, role).init, "init", f"{role}.init")
    metrics = tuple(resolve(ComponentSpec(type=name), "metric", join_path("train", "eval_metrics", i))
                    for i, name in enumerate(bp.train.eval_metrics))
    _check_per_class_metrics(loaded, metrics)
    dataset = resolve_dataset(loaded, registry)
    latent = resolve(bp.generator.latent, "latent", "generator.latent")
    controllers = tuple(resolve(spec, "controller", join_path("controllers", i))
                        for i, spec in enumerate(bp.controllers))
    return ResolvedComponents(loss=loss, regularizers=regularizers, update_rules=update_rules,
                              optimizers=optimizers, inits=inits, metrics=metrics, dataset=dataset,
                              latent=latent, controllers=controllers)


def _check_per_class_metrics(loaded: LoadedBlueprint, metrics: tuple[Resolved, ...]) -> None:
    """A per-class metric (needs_real_labels) in an unconditional blueprint fails here, not mid-training."""
    from ..contracts import capability

    if loaded.blueprint.data.num_classes:
        return
    for resolved in metrics:
        if capability(resolved.component.obj, "needs_real_labels", kind="metric"):
            raise loaded.error(f"metric {resolved.component.name} compares generated and reference images class by "
                               "class, but data.num_classes is 0 (unconditional)", resolved.path, across_keys=True)


def resolve_dataset(loaded: LoadedBlueprint, registry: "Registry") -> Resolved:
    """The blueprint's dataset alone (the loader benchmark reads data without the rest)."""
    spec = ComponentSpec(type=loaded.blueprint.data.type, **loaded.blueprint.data.component_settings())
    return _resolve_one(registry, spec, kind="dataset", path="data", loaded=loaded)


def _resolve_one(registry: "Registry", spec: ComponentSpec, *, kind: str, path: str,
                 loaded: LoadedBlueprint) -> Resolved:
    component, settings = resolve_component(registry, spec, kinds=[kind], path=path, loaded=loaded)
    return Resolved(component=component, settings=settings, path=path)
