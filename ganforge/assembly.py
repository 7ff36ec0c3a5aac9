"""Turning a blueprint's network stacks into modules, inferring shapes as it goes.

Each component is built with only the context it declares (``in_channels``, ``in_size``,
``in_features``, ``num_classes``) and run once on the meta device to learn its output
shape, so channel counts and resolutions are never repeated in a blueprint and an
impossible stack fails before a single weight is allocated.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .blueprint.schema import NetworkSpec
from .blueprint.validation import LoadedBlueprint, ResolvedComponents, resolve_component, resolve_components
from .contracts import KIND_TABLE, capability, is_attention
from .errors import join_path
from .records import TaggedParameter
from .registry import NETWORK_KINDS, Registry, default_registry

if TYPE_CHECKING:
    from .registry import Component

Shape = tuple[int, ...]


@dataclass
class LayerInfo:
    """What ``ganforge inspect`` shows for one component of a network."""

    index: int
    component: str
    kind: str
    path: str
    input_shape: Shape
    output_shape: Shape
    params: int
    settings: dict[str, Any]
    takes_labels: bool
    param_bytes: int = 0   # parameters' bytes, counted on the meta device
    buffer_bytes: int = 0  # buffers' bytes (batch-norm statistics, spectral-norm u/v, ...)
    attention: bool = False  # it, or a module inside it, is attention (``contracts.is_attention``)
    # setting name -> the blueprint key that sets it (the component's own key, or its network's defaults)
    setting_keys: dict[str, str] = field(default_factory=dict, repr=False)
    # conditioning entries it receives: entry -> its slot among a per-layer entry's consumers (None: shared)
    context: dict[str, int | None] = field(default_factory=dict)
    # streams it carries (``carries``: StyleGAN2's skip image), and the shapes it leaves them in
    carries: tuple[str, ...] = ()
    streams: dict[str, Shape] = field(default_factory=dict)


@dataclass
class NetworkPlan:
    """A checked stack: which component, with what settings and context, in what order."""

    role: str
    input_shape: Shape
    layers: list[LayerInfo] = field(default_factory=list)
    _builders: list[tuple["Component", dict[str, Any], dict[str, Any]]] = field(default_factory=list, repr=False)
    init: tuple["Component", dict[str, Any]] | None = None
    # the blueprint key that sets the input's first dimension (latent_dim, data.channels)
    input_key: str = ""
    context: "ContextPlan | None" = None  # the generator's context producers, when it has any
    latent: Any = None  # the generator's latent component (its draws), kept on the built network

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].output_shape if self.layers else self.input_shape

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers) + (self.context.params if self.context else 0)

    @property
    def attention(self) -> list[LayerInfo]:
        return [layer for layer in self.layers if layer.attention]

    @property
    def param_bytes(self) -> int:
        return sum(layer.param_bytes for layer in self.layers)

    @property
    def buffer_bytes(self) -> int:
        return sum(layer.buffer_bytes for layer in self.layers)

    def build(self, device: torch.device | str = "cpu", *, initialise: bool = True) -> "Network":
        """Allocate the real network (on ``device``) and apply the blueprint's init scheme.

        Whoever builds checks memory first (``memory_estimate.check_training`` before training,
        ``check_weights`` before restoring): the plan does not know which use it is built for.
        """
        with torch.device(device):
            modules = [component.build(settings, context) for component, settings, context in self._builders]
            producers = self.context.build() if self.context else []
        network = Network(modules, input_shape=self.input_shape, output_shape=self.output_shape,
                          names=[layer.component for layer in self.layers], producers=producers,
                          routes=[layer.context for layer in self.layers],
                          carries=[layer.carries for layer in self.layers])
        if self.latent is not None:  # sampling draws z as training did (not a module: no weights, no state)
            network.latent = self.latent
        if initialise and self.init is not None and torch.device(device).type != "meta":
            component, settings = self.init
            component.build(settings)(network)
        return network


class Network(nn.Module):
    """A stack of components; class labels go to those whose ``forward`` takes ``labels``.

    A generator may open with context producers (``generator.context``): they turn the latent
    draws and labels into named entries (a shared class embedding, z chunks, styles), and each
    stack component receives the entries it declares (``routes``), the i-th consumer of a
    per-layer entry its i-th slice. Nothing rides along as feature planes.
    """

    def __init__(self, layers: list[nn.Module], *, input_shape: Shape, output_shape: Shape,
                 names: list[str], producers: list[nn.Module] | None = None,
                 routes: list[dict[str, int | None]] | None = None,
                 carries: list[tuple[str, ...]] | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)
        self.names = list(names)
        self._takes_labels = [takes_labels(layer) for layer in layers]
        if producers:  # only then: the state dict of a plain stack stays what it always was
            self.producers = nn.ModuleList(producers)
        self._producer_inputs = [keyword_inputs(p) for p in producers or []]
        self._routes = [dict(route) for route in routes] if routes else [{} for _ in layers]
        self._carries = [tuple(c) for c in carries] if carries else [() for _ in layers]
        self._plain = not producers and not any(self._routes) and not any(self._carries)

    def frozen_normalisation(self) -> contextlib.AbstractContextManager:
        """A context in which passes leave weight normalisation's state alone (spectral-norm ``u``/``v``).

        The network stays in its mode otherwise (batch norm still uses and updates batch statistics),
        so this is the official SAGAN discriminator pass on generated images (``update_collection="NO_OPS"``,
        brain-research/self-attention-gan ``model.py:274-275``, ``ops.py:170``); also used for extra
        passes over unchanged weights (regularisers, accumulated micro-batches, standing statistics).
        Nesting is fine; the previous state is restored on exit, also after an exception.
        """
        return frozen_normalisation(self)

    @property
    def consumes(self) -> frozenset[str]:
        """The inputs beside ``x`` and ``labels`` a pass reads (latent draws, ``truncation_psi``)."""
        return frozenset(name for inputs in self._producer_inputs for name in inputs) - {"z", "labels"}

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, *, return_context: bool = False,
                **inputs: Any) -> Any:
        """The stack's output; with ``return_context``, ``(output, entries)`` (the context as used)."""
        if self._plain and not return_context:
            for layer, wants_labels in zip(self.layers, self._takes_labels):
                x = layer(x, labels) if wants_labels else layer(x)
            return x
        entries: dict[str, Any] = {"z": x, "labels": labels, **inputs}
        for producer, wanted in zip(getattr(self, "producers", ()), self._producer_inputs):
            entries.update(producer(**{name: entries[name] for name in wanted if name in entries}))
        x = entries.get("input", x)
        streams: dict[str, Any] = {}  # carried from component to component (a skip architecture's image)
        for layer, wants_labels, route, carried in zip(self.layers, self._takes_labels, self._routes, self._carries):
            given = {name: entries[name] if slot is None else entries[name][:, slot] for name, slot in route.items()}
            given.update({name: streams.get(name) for name in carried})
            x = layer(x, labels, **given) if wants_labels else layer(x, **given)
            if carried and isinstance(x, dict):
                streams.update({name: x[name] for name in carried})
                x = x["x"]
        if return_context:
            return x, {k: v for k, v in entries.items() if k != "labels" and isinstance(v, torch.Tensor)}
        return x


def frozen_normalisation(module: nn.Module) -> contextlib.AbstractContextManager:
    """``Network.frozen_normalisation()`` for any module tree (e.g. a network wrapped or built by hand)."""
    from .components.layers.spectral_norm import frozen_spectral_norm

    return frozen_spectral_norm(module)


def takes_labels(module: nn.Module) -> bool:
    return "labels" in inspect.signature(module.forward).parameters


def tagged_parameters(network: nn.Module) -> tuple[TaggedParameter, ...]:
    """Every parameter of ``network`` with its dotted name and the tags of the modules holding it."""
    tags: dict[int, set[str]] = {}
    for module in network.modules():
        declared = capability(module, "parameter_tags", kind="layer")
        if declared:
            for parameter in module.parameters():
                tags.setdefault(id(parameter), set()).update(declared)
    return tuple(TaggedParameter(name, parameter, frozenset(tags.get(id(parameter), ())))
                 for name, parameter in network.named_parameters())


def keyword_inputs(module: nn.Module) -> tuple[str, ...]:
    """The named inputs a context producer's ``forward`` reads."""
    return tuple(name for name, p in inspect.signature(module.forward).parameters.items()
                 if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))


@dataclass
class ContextPlan:
    """The generator's context producers, checked in order: what each provides, at what size."""

    producers: list[LayerInfo] = field(default_factory=list)
    entries: dict[str, tuple[str, int]] = field(default_factory=dict)  # entry -> ("shared"|"per_layer", size)
    consumers: dict[str, int] = field(default_factory=dict)  # per-layer entry -> its consumers in the stack
    input_shape: Shape | None = None  # what the stack receives when a producer provides ``input``
    reads: set[str] = field(default_factory=set)  # the pass inputs the producers read (z, mix_z, truncation_psi)
    _builders: list[tuple["Component", dict[str, Any], dict[str, Any]]] = field(default_factory=list, repr=False)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.producers)

    def build(self) -> list[nn.Module]:
        return [component.build(settings, context) for component, settings, context in self._builders]


def plan_network(loaded: LoadedBlueprint, role: str, *, input_shape: Shape, num_classes: int,
                 registry: Registry, context: ContextPlan | None = None) -> NetworkPlan:
    """Resolve, validate and shape-check the ``role`` stack (``generator`` or ``discriminator``)."""
    spec: NetworkSpec = getattr(loaded.blueprint, role)
    if context is not None and context.input_shape is not None:
        input_shape = context.input_shape
    plan = plan_stack(loaded, role, spec, input_shape=input_shape, num_classes=num_classes, registry=registry,
                      entries=context.entries if context else {})
    plan.init = resolve_component(registry, spec.init, kinds=["init"], path=f"{role}.init", loaded=loaded)
    plan.context = context
    return plan


def _stack_items(role: str, spec: NetworkSpec) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    if spec.stem is not None:
        items.append((join_path(role, "stem"), spec.stem))
    items += [(join_path(role, "blocks", i), block) for i, block in enumerate(spec.blocks)]
    items.append((join_path(role, "head"), spec.head))
    return items


def plan_context(loaded: LoadedBlueprint, *, num_classes: int, registry: Registry) -> ContextPlan | None:
    """Plan ``generator.context``: count each per-layer entry's consumers, then probe the producers in order."""
    spec = loaded.blueprint.generator
    if not spec.context:
        return None
    plan = ContextPlan()
    resolved = [(join_path("generator", "context", i), *resolve_component(
        registry, item, kinds=["context"], path=join_path("generator", "context", i), loaded=loaded))
        for i, item in enumerate(spec.context)]
    own_settings = [item.settings for item in spec.context]
    per_layer = [entry for _, component, _ in resolved
                 for entry, how in dict(getattr(component.obj, "provides", {}) or {}).items() if how == "per_layer"]
    stack = _stack_items("generator", spec) + [(join_path("generator", "attention", i), a)
                                               for i, a in enumerate(spec.attention)]
    for path, item in stack:
        component, _ = resolve_component(registry, item, kinds=NETWORK_KINDS, path=path, loaded=loaded,
                                         defaults=spec.defaults)
        for entry in component.entry_dims(per_layer):
            plan.consumers[entry] = plan.consumers.get(entry, 0) + 1
    latent = resolve_component(registry, spec.latent, kinds=["latent"], path="generator.latent", loaded=loaded)
    with torch.device("meta"):
        draws = latent[0].build(latent[1], {"latent_dim": spec.latent_dim}).draw(2, generator=None, device="meta")
    available: dict[str, Any] = {**draws}
    if num_classes > 0:
        available["labels"] = torch.zeros(2, dtype=torch.long, device="meta")
    for (path, component, settings), own in zip(resolved, own_settings):
        provides = dict(component.obj.provides)
        for entry in component.entry_dims(plan.entries):
            if f"{entry}_dim" in own:
                raise loaded.error(f"{entry}_dim is the size of the {entry!r} context entry and is set by the "
                                   "producers before this one; remove it", join_path(path, f"{entry}_dim"))
        context = {"latent_dim": spec.latent_dim, "num_classes": num_classes,
                   "consumers": {e: plan.consumers.get(e, 0) for e, how in provides.items() if how == "per_layer"},
                   **{f"{entry}_dim": size for entry, (_, size) in plan.entries.items()}}
        try:
            with torch.device("meta"), torch.no_grad():
                module = component.build(settings, context)
                wanted = keyword_inputs(module)
                plan.reads.update(wanted)
                out = module(**{name: available[name] for name in wanted if name in available})
        except Exception as err:  # the producer's own message says what is impossible
            raise loaded.error(f"{component.name!r} cannot be built here: {err}", path) from err
        _check_module_requirements(loaded, component, module, path)
        if not isinstance(out, dict) or set(out) - set(provides):
            raise loaded.error(f"{component.name!r} returned {sorted(out) if isinstance(out, dict) else type(out).__name__}"
                               f", but declares provides = {sorted(provides)}", path)
        for entry, value in out.items():
            how = provides[entry]
            if entry == "input":
                plan.input_shape = tuple(value.shape[1:])
            elif how == "per_layer":
                if value.ndim != 3 or value.shape[1] != plan.consumers.get(entry, 0):
                    raise loaded.error(f"{component.name!r} gives {entry!r} the shape {_fmt(tuple(value.shape[1:]))}; "
                                       f"a per-layer entry is (consumers × size), with {plan.consumers.get(entry, 0)} "
                                       "consumers in this generator", path)
                plan.entries[entry] = (how, int(value.shape[2]))
            else:
                plan.entries[entry] = (how, int(value.shape[1:].numel()))
            available[entry] = value
        plan._builders.append((component, settings, context))
        params = sum(p.numel() for p in module.parameters())
        plan.producers.append(LayerInfo(
            index=len(plan.producers), component=component.name, kind="context", path=path, input_shape=(),
            output_shape=(), params=params, settings=settings, takes_labels="labels" in wanted,
            param_bytes=sum(p.numel() * p.element_size() for p in module.parameters()),
            buffer_bytes=sum(b.numel() * b.element_size() for b in module.buffers()),
            context={entry: None for entry in out}))
    return plan


def plan_stack(loaded: LoadedBlueprint, role: str, spec: NetworkSpec, *, input_shape: Shape, num_classes: int,
               registry: Registry, entries: dict[str, tuple[str, int]] | None = None) -> NetworkPlan:
    items = _stack_items(role, spec)
    entries = entries or {}
    slots: dict[str, int] = {}  # per-layer entry -> consumers seen so far
    streams: dict[str, Shape] = {}  # carried stream -> its shape so far (absent: not started yet)

    pending_attention = sorted(enumerate(spec.attention), key=lambda pair: pair[1].resolution)
    placed: set[int] = set()
    used_defaults: set[str] = set()
    plan = NetworkPlan(role=role, input_shape=tuple(input_shape))
    shape: Shape = tuple(input_shape)
    resolutions: list[int] = []

    def add(path: str, item: Any) -> None:
        nonlocal shape
        component, settings = resolve_component(registry, item, kinds=NETWORK_KINDS, path=path, loaded=loaded,
                                                defaults=spec.defaults)
        used_defaults.update(k for k in spec.defaults if k in component.schema.model_fields)
        context = _context_for(component, shape, num_classes, loaded, path)
        route: dict[str, int | None] = {}
        for entry in component.entry_dims(entries):
            if f"{entry}_dim" in (item.settings if isinstance(item.settings, dict) else {}):
                raise loaded.error(f"{entry}_dim is the size of the {entry!r} context entry and is set by the "
                                   "generator's context producers; remove it", join_path(path, f"{entry}_dim"))
            how, size = entries[entry]
            context[f"{entry}_dim"] = size
            if how == "per_layer":
                route[entry] = slots.get(entry, 0)
                slots[entry] = route[entry] + 1
            else:
                route[entry] = None
        carried = tuple(capability(component.obj, "carries", kind="layer") or ())
        clash = [name for name in carried if name in entries]
        if clash:
            raise loaded.error(f"{component.name!r} carries a stream named {clash[0]!r}, which is also a context "
                               "entry; give the stream another name", path)
        out_shape, params, wants_labels, param_bytes, buffer_bytes, attention, left = _probe(
            component, settings, context, shape, num_classes, loaded, path,
            given={entry: entries[entry][1] for entry in route},
            streams={name: streams.get(name) for name in carried})
        streams.update(left)
        plan._builders.append((component, settings, context))
        own = item.settings if isinstance(item.settings, dict) else {}
        setting_keys = {key: (join_path(path, key) if key in own or key not in spec.defaults
                              else join_path(role, "defaults", key)) for key in settings}
        plan.layers.append(LayerInfo(index=len(plan.layers), component=component.name, kind=component.kind,
                                     path=path, input_shape=shape, output_shape=out_shape, params=params,
                                     settings=settings, takes_labels=wants_labels, param_bytes=param_bytes,
                                     buffer_bytes=buffer_bytes, setting_keys=setting_keys, attention=attention,
                                     context=route, carries=carried, streams=left))
        shape = out_shape

    for path, item in items:
        add(path, item)
        if len(shape) == 3:
            resolutions.append(shape[1])
            for index, attention in pending_attention:
                if index not in placed and attention.resolution == shape[1] and shape[1] == shape[2]:
                    placed.add(index)
                    add(join_path(role, "attention", index), attention)

    for index, attention in pending_attention:
        if index not in placed:
            seen = ", ".join(f"{r}×{r}" for r in dict.fromkeys(resolutions)) or "none"
            raise loaded.error(
                f"no component of the {role} outputs {attention.resolution}×{attention.resolution} "
                f"(resolutions in this stack: {seen})",
                join_path(role, "attention", index, "resolution"),
            )
    for key in spec.defaults:
        if key not in used_defaults:
            raise loaded.error("no component of this network accepts this setting", join_path(role, "defaults", key))
    return plan


def _context_for(component: "Component", shape: Shape, num_classes: int, loaded: LoadedBlueprint,
                 path: str) -> dict[str, Any]:
    needs = component.context_params
    context: dict[str, Any] = {}
    if "num_classes" in needs:
        context["num_classes"] = num_classes
    if needs & {"in_channels", "in_size"}:
        if len(shape) != 3:
            raise loaded.error(f"{component.name!r} takes an image (C×H×W) but receives a "
                               f"{'×'.join(map(str, shape))} vector", join_path(path, "type"))
        if shape[1] != shape[2]:
            raise loaded.error(f"{component.name!r} needs a square input, got {_fmt(shape)}", join_path(path, "type"))
        context["in_channels"], context["in_size"] = shape[0], shape[1]
    if "in_features" in needs:
        if len(shape) != 1:
            raise loaded.error(f"{component.name!r} takes a vector but receives an image of {_fmt(shape)}",
                               join_path(path, "type"))
        context["in_features"] = shape[0]
    return {k: v for k, v in context.items() if k in needs}


def _probe(component: "Component", settings: dict[str, Any], context: dict[str, Any], shape: Shape,
           num_classes: int, loaded: LoadedBlueprint, path: str, given: dict[str, int] | None = None,
           streams: dict[str, Shape | None] | None = None,
           ) -> tuple[Shape, int, bool, int, int, bool, dict[str, Shape]]:
    """Build on the meta device and run one forward: output shape, parameter count and bytes, whether
    it holds attention, the shapes it leaves its carried streams in; no weights. ``given``: the
    context entries it receives, by size; ``streams``: the carried streams' shapes (None: not started)."""
    try:
        with torch.device("meta"):
            module = component.build(settings, context)
            wants_labels = takes_labels(module)
            x = torch.empty(2, *shape)
            labels = torch.zeros(2, dtype=torch.long) if num_classes > 0 else None
            extra: dict[str, Any] = {entry: torch.empty(2, size) for entry, size in (given or {}).items()}
            extra.update({name: None if s is None else torch.empty(2, *s) for name, s in (streams or {}).items()})
            with torch.no_grad():
                out = module(x, labels, **extra) if wants_labels else module(x, **extra)
    except Exception as err:  # the component's own message says what is impossible
        raise loaded.error(f"{component.name!r} cannot be built here (input {_fmt(shape)}): {err}", path) from err
    _check_module_requirements(loaded, component, module, path)
    left: dict[str, Shape] = {}
    if streams and isinstance(out, dict):  # a component carrying streams returns {"x": ..., stream: ...}
        if "x" not in out or set(out) != {"x", *streams}:
            raise loaded.error(f"{component.name!r} carries {', '.join(map(repr, streams))} and returned the keys "
                               f"{sorted(out)}; return {{'x': ..., {', '.join(repr(s) + ': ...' for s in streams)}}} "
                               "(or, as the stack's last component, the output tensor)", path)
        left = {name: tuple(out[name].shape[1:]) for name in streams}
        out = out["x"]
    declared = tuple(capability(module, "outputs", kind="head"))
    if declared and not isinstance(out, dict):
        raise loaded.error(f"{component.name!r} declares the outputs {declared!r} but returned a "
                           f"{type(out).__name__}; return {{'logit': ..., {', '.join(repr(d) + ': ...' for d in declared)}}}",
                           path)
    if isinstance(out, dict) and component.kind != "head":
        raise loaded.error(f"{component.name!r} returned a dict; only a discriminator head returns named outputs", path)
    if isinstance(out, dict):
        if "logit" not in out or set(out) - {"logit"} != set(declared):
            raise loaded.error(f"{component.name!r} returned the outputs {sorted(out)}; a head returns 'logit' plus "
                               f"the extras it declares (outputs = {declared!r})", path)
        out = out["logit"]
    if not isinstance(out, torch.Tensor):
        raise loaded.error(f"{component.name!r} returned {type(out).__name__}, not a tensor", path)
    params = sum(p.numel() for p in module.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    buffer_bytes = sum(b.numel() * b.element_size() for b in module.buffers())
    attention = any(is_attention(sub) for sub in module.modules())
    return tuple(out.shape[1:]), params, wants_labels, param_bytes, buffer_bytes, attention, left


def _declared_outputs(registry: Registry, loaded: LoadedBlueprint) -> tuple[str, ...]:
    """The extras the discriminator's head declares (read from its class, or from a meta build)."""
    spec = loaded.blueprint.discriminator.head
    component = registry.find(spec.type, NETWORK_KINDS)
    return tuple(capability(component.obj, "outputs", kind="head"))


def _check_module_requirements(loaded: LoadedBlueprint, component: "Component", module: nn.Module,
                               path: str) -> None:
    """Refuse a module (or one inside it) that ``requires`` a component the blueprint lacks."""
    for sub in module.modules():
        for required in capability(sub, "requires", kind="layer"):
            if not loaded.has_component(required):
                raise loaded.error(f"{component.name!r} requires the {_requirement(required)}, which this blueprint "
                                   "does not have", path)


def _check_groups(loaded: LoadedBlueprint, role: str, plan: NetworkPlan) -> None:
    """Every tag an optimiser group names is carried by a parameter of its network (a meta build)."""
    groups = getattr(loaded.blueprint.optimizers, role).groups
    if not groups:
        return
    network = plan.build("meta", initialise=False)
    tagged = tagged_parameters(network)
    carried = {tag for t in tagged for tag in t.tags}
    for t in tagged:
        both = [tag for tag in groups if tag in t.tags]
        if len(both) > 1:
            raise loaded.error(f"parameter {t.name} of the {role} carries the tags {' and '.join(map(repr, both))}, "
                               "each with its own group; give settings to one of them",
                               join_path("optimizers", role, "groups", both[1]))
    for tag in groups:
        if tag not in carried:
            shown = ", ".join(sorted(carried)) or "none"
            raise loaded.error(f"no parameter of the {role} carries the tag {tag!r} (tags its components set with "
                               f"parameter_tags: {shown})", join_path("optimizers", role, "groups", tag))


def _check_requirements(loaded: LoadedBlueprint, components: ResolvedComponents) -> None:
    """Refuse a blueprint lacking a component that another one it names ``requires``."""
    named = [components.loss, *components.regularizers, *components.controllers, components.latent]
    for resolved in named:
        if resolved is None:
            continue
        for required in capability(resolved.component.obj, "requires", kind=resolved.component.kind):
            if not loaded.has_component(required):
                raise loaded.error(f"{resolved.component.name!r} requires the {_requirement(required)}, which "
                                   "this blueprint does not have", resolved.path)


def _fmt(shape: Shape) -> str:
    return "×".join(str(s) for s in shape)


def _requirement(required: str) -> str:
    kind, _, name = required.partition(":")
    where = " or ".join(KIND_TABLE[kind].blueprint) if kind in KIND_TABLE else kind
    return f"{kind} {name!r} (add it under {where})"


@dataclass
class Assembly:
    """Both network plans, checked against each other and against the data."""

    loaded: LoadedBlueprint
    generator: NetworkPlan
    discriminator: NetworkPlan
    components: ResolvedComponents  # loss, regularisers, optimisers, ..., resolved once for everything downstream
    # devices whose training footprint (both networks) has been checked by a first build
    _training_checked: set[str] = field(default_factory=set, repr=False)


def assemble(loaded: LoadedBlueprint, registry: Registry | None = None) -> Assembly:
    """Check the whole blueprint and plan both networks; no weights are allocated."""
    registry = registry or default_registry()
    components = resolve_components(loaded, registry)
    bp = loaded.blueprint
    image: Shape = (bp.data.channels, bp.data.resolution, bp.data.resolution)
    num_classes = bp.data.num_classes
    _check_requirements(loaded, components)
    context = plan_context(loaded, num_classes=num_classes, registry=registry)
    generator = plan_network(loaded, "generator", input_shape=(bp.generator.latent_dim,),
                             num_classes=num_classes, registry=registry, context=context)
    generator.input_key = "generator.latent_dim"
    generator.latent = components.latent.build({"latent_dim": bp.generator.latent_dim})
    if generator.output_shape != image and generator.output_shape[1:] == image[1:]:
        # only the channels differ: the head sets them (image_output's `channels`), not the blocks
        raise loaded.error(
            f"the generator produces {_fmt(generator.output_shape)} images but the data is {_fmt(image)} "
            f"(data.channels × data.resolution²): set generator.head.channels to {image[0]} "
            f"(or data.channels to {generator.output_shape[0]})",
            "generator.head.channels", across_keys=True,
        )
    if generator.output_shape != image:
        raise loaded.error(
            f"the generator produces {_fmt(generator.output_shape)} images but the data is {_fmt(image)} "
            "(data.channels × data.resolution²): change the up-sampling blocks, the head's channels, or the data",
            "generator.blocks", across_keys=True,
        )
    discriminator = plan_network(loaded, "discriminator", input_shape=image, num_classes=num_classes,
                                 registry=registry)
    discriminator.input_key = "data.channels"
    if discriminator.output_shape not in ((1,), ()):
        raise loaded.error(
            f"the discriminator must output one logit per image (shape 1), but outputs {_fmt(discriminator.output_shape)}",
            "discriminator.head", across_keys=True,
        )
    needed = capability(components.loss.component.obj, "needs_outputs", kind="loss")
    head = discriminator.layers[-1]
    declared = _declared_outputs(registry, loaded) if needed else ()
    missing = [name for name in needed if name not in declared]
    if missing:
        raise loaded.error(
            f"loss {components.loss.component.name!r} reads the discriminator's {', '.join(map(repr, missing))}, but "
            f"its head {head.component!r} declares {', '.join(map(repr, declared)) or 'no extras'} (use a head "
            "whose `outputs` include them)", "loss.type", across_keys=True,
        )
    _check_generator_inputs(loaded, components, generator, discriminator)
    _check_groups(loaded, "generator", generator)
    _check_groups(loaded, "discriminator", discriminator)
    assembly = Assembly(loaded=loaded, generator=generator, discriminator=discriminator, components=components)
    return assembly


def _check_generator_inputs(loaded: LoadedBlueprint, components: ResolvedComponents, generator: NetworkPlan,
                            discriminator: NetworkPlan) -> None:
    """Refuse what would fail or mislead silently: draws nothing reads, regulariser needs nothing provides,
    a controller listed twice or required by no module."""
    with torch.device("meta"):
        draws = set(generator.latent.draw(2, generator=None, device="meta")) - {"z"}
    unread = sorted(draws - (generator.context.reads if generator.context else set()))
    if unread:
        raise loaded.error(f"the latent draws {', '.join(unread)} but nothing in the generator reads "
                           f"{'it' if len(unread) == 1 else 'them'} (style mixing needs a context producer such as "
                           "style_mapping)", "generator.latent", across_keys=True)
    entries = {"z", *(generator.context.entries if generator.context else ())}
    for resolved in components.regularizers:
        needed = tuple(capability(resolved.build(), "needs_context", kind="regularizer") or ())
        missing = [entry for entry in needed if entry not in entries]
        if missing:
            raise loaded.error(f"{resolved.component.name!r} differentiates through the generator's "
                               f"{', '.join(map(repr, missing))}, which no context producer provides "
                               f"(the generator's entries: {', '.join(sorted(entries))})", resolved.path,
                               across_keys=True)
    controllers = [spec.component.name for spec in components.controllers]
    if not controllers:
        return
    modules = [*generator.build("meta", initialise=False).modules(),
               *discriminator.build("meta", initialise=False).modules()]
    required = {name for m in modules for name in capability(m, "requires", kind="layer")}
    for index, name in enumerate(controllers):
        if name in controllers[:index]:
            raise loaded.error(f"controller {name!r} is listed twice; one controls every module that requires it",
                               join_path("controllers", index))
        if f"controller:{name}" not in required:
            raise loaded.error(f"no module of either network requires controller {name!r}, so it would control "
                               "nothing (e.g. `ada` controls the `ada_augment` layer)", join_path("controllers", index),
                               across_keys=True)
