"""The component registry: named, kind-scoped, schema-checked building blocks.

Built-in components register with the ``@register`` decorator in their own modules,
which the registry imports on first lookup (never at ``import ganforge``). Third-party
packages add components through entry points (see ``ganforge.plugins``), loaded one
name at a time. A component's settings schema is derived from its keyword-only
signature, so there is no hand-written schema to drift from the code.

Renames keep old runs loading (timm's deprecation map is the precedent): a component registered
with ``aliases=("old_name",)`` (or listed in ``DEPRECATED_NAMES``) is still found under its old
name, and ``renamed_settings={"old": "new"}`` accepts a setting under its old key. Either prints
one line on stderr naming old → new (once per registry or component), so a blueprint embedded in
an old checkpoint still validates, assembles and restores.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import pkgutil
import sys
import typing
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable, TypeVar

from .contracts import KIND_TABLE, check_keyword_only
from .contracts import KINDS, NETWORK_KINDS  # noqa: F401  re-exported: views of the one table of kinds
from .errors import CollisionError, RegistryError, UnknownComponentError
from .kinds import NAME_PATTERN, NAME_RULE, QUALIFIED_PATTERN, BrokenPlugin
from .plugins import PluginIndex, normalize, plugins_disabled

BUILTIN_PACKAGES: tuple[str, ...] = (
    "ganforge.components.layers",
    "ganforge.components.blocks",
    "ganforge.components.losses",
    "ganforge.components.optim",
    "ganforge.components.latents",
    "ganforge.components.data",
    "ganforge.components.metrics",
)
"""The component packages, by kind; the first lookup imports every module under them (and nothing else)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Parameter:
    """One setting of a component, as shown by ``ganforge components show``."""

    name: str
    annotation: str
    default: Any
    required: bool


@dataclass(eq=False)
class Component:
    """A registered, buildable thing: the object plus where it came from."""

    kind: str
    name: str
    obj: Callable[..., Any]
    origin: str
    renamed_settings: dict[str, str] = field(default_factory=dict)
    """Old setting name → current one; the old key is still accepted, with a warning."""
    _warned: set[str] = field(default_factory=set, repr=False)

    @property
    def qualname(self) -> str:
        return f"{getattr(self.obj, '__module__', '?')}:{getattr(self.obj, '__qualname__', repr(self.obj))}"

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.obj.__doc__ or "")

    @property
    def summary(self) -> str:
        doc = self.doc
        return doc.splitlines()[0] if doc else ""

    @cached_property
    def _signature(self) -> inspect.Signature:
        return inspect.signature(self.obj)

    @cached_property
    def context_params(self) -> frozenset[str]:
        """The context values (``in_channels``...) this component asks the assembler for."""
        context = KIND_TABLE[self.kind].context_params
        return frozenset(name for name in self._signature.parameters if name in context)

    @cached_property
    def schema(self) -> type:
        """A pydantic model of the settings, with unknown keys forbidden."""
        return settings_model(self.obj, name=f"{self.kind}.{self.name}", exclude=self.context_params)

    def parameters(self) -> list[Parameter]:
        out = []
        for name, info in self.schema.model_fields.items():
            out.append(
                Parameter(
                    name=name,
                    annotation=_type_name(info.annotation) + _bounds_suffix(info.metadata),
                    default=None if info.is_required() else info.default,
                    required=info.is_required(),
                )
            )
        return out

    def validate(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Check settings against the schema; returns them with defaults filled in.

        Raises pydantic's ValidationError; callers attach the blueprint path. Settings under a
        renamed (old) key are moved to the new one, with a one-line warning.
        """
        settings = self.upgrade_settings(settings)
        model = self.schema.model_validate(settings)
        return {name: getattr(model, name) for name in self.schema.model_fields}

    def upgrade_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """``settings`` with every renamed key under its current name (warns once per old key)."""
        if not self.renamed_settings or not any(old in settings for old in self.renamed_settings):
            return settings
        settings = dict(settings)
        for old, new in self.renamed_settings.items():
            if old not in settings:
                continue
            if new in settings:
                raise RegistryError(f"{self.kind} {self.name!r}: setting {old!r} was renamed to {new!r}; "
                                    f"give only {new!r}")
            settings[new] = settings.pop(old)
            if old not in self._warned:
                self._warned.add(old)
                warn_deprecated(f"{self.kind} {self.name!r}: setting {old!r} was renamed to {new!r} "
                                f"({old} → {new}); update the blueprint")
        return settings

    def build(self, settings: dict[str, Any], context: dict[str, Any] | None = None) -> Any:
        """Instantiate with validated settings plus the context values it declared."""
        kwargs = dict(self.validate(settings))
        for name, value in (context or {}).items():
            # declared context, or the size of a conditioning entry (``class_embedding_dim``) it takes
            if name in self.context_params or (name.endswith("_dim") and name in self._signature.parameters):
                kwargs[name] = value
        return self.obj(**kwargs)

    def entry_dims(self, entries: Iterable[str]) -> list[str]:
        """The conditioning entries (of ``entries``) this component consumes: it takes ``<entry>_dim``."""
        return [entry for entry in entries if f"{entry}_dim" in self._signature.parameters]


def settings_model(obj: Callable[..., Any], *, name: str, exclude: frozenset[str] = frozenset()) -> type:
    """Derive a pydantic model from ``obj``'s keyword-only signature, leaving out ``exclude``."""
    import pydantic

    sig = inspect.signature(obj)
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolved forward references: fall back to no type checks
        hints = {}
    fields: dict[str, Any] = {}
    for pname, param in sig.parameters.items():
        if pname in exclude:
            continue
        annotation = hints.get(pname, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (annotation, default)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())
    return pydantic.create_model(f"Settings[{name}]", __config__=config, **fields)


def _type_name(annotation: Any) -> str:
    """Readable type, with pydantic constraints shown as ``float (> 0)``."""
    if annotation is None or annotation is type(None):
        return "None"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        bounds = [_bound(meta) for meta in args[1:]]
        bounds = [b for b in bounds if b]
        return _type_name(args[0]) + (f" ({', '.join(bounds)})" if bounds else "")
    if origin is typing.Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None and args:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in args)}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")


def _bounds_suffix(metadata: list[Any]) -> str:
    bounds = [b for b in (_bound(meta) for meta in metadata) if b]
    return f" ({', '.join(bounds)})" if bounds else ""


def _bound(meta: Any) -> str:
    parts = []
    for attr, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
        for item in [meta, *getattr(meta, "metadata", [])]:
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return ", ".join(dict.fromkeys(parts))


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to a mistyped ``word`` (difflib, cutoff 0.6), best first."""
    return difflib.get_close_matches(word, sorted(set(candidates)), n=n, cutoff=0.6)


def did_you_mean(suggestions: Iterable[str]) -> str:
    """``"; did you mean 'a', 'b'?"`` for a message, or ``""`` when there is nothing close."""
    suggestions = list(suggestions)
    return f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""


@dataclass
class Registry:
    """Kind-scoped names → components, with lazily loaded built-ins and plugins."""

    builtin_packages: tuple[str, ...] = ()
    plugin_source: PluginIndex | None = None  # None: no plugins
    include_all_declared: bool = False  # the default registry also takes @register-ed user code
    _entries: dict[tuple[str, str], Component] = field(default_factory=dict)
    _builtins_loaded: bool = False
    _aliases: dict[tuple[str, str], str] = field(default_factory=dict)
    _warned: set[tuple[str, str]] = field(default_factory=set)

    # -- registration -------------------------------------------------------
    def add(self, kind: str, name: str, obj: Callable[..., Any], *, origin: str | None = None,
            aliases: Iterable[str] = (), renamed_settings: dict[str, str] | None = None) -> Component:
        """Register ``obj``; the same object again is a no-op, a different one an error.

        ``aliases`` are former names that still find it (with a warning); ``renamed_settings`` maps
        former setting names to current ones.
        """
        _check_kind(kind)
        _check_name(name, qualified=True)
        check_keyword_only(obj)
        origin = origin or _origin_of(obj)
        existing = self._entries.get((kind, name))
        if existing is not None:
            if existing.obj is obj:
                return existing
            raise CollisionError(
                f"{kind} {name!r} is already registered by {existing.origin} ({existing.qualname}); "
                f"{origin} ({getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', obj)}) "
                "tried to register a different object under the same name"
            )
        component = Component(kind=kind, name=name, obj=obj, origin=origin,
                              renamed_settings=dict(renamed_settings or {}))
        self._entries[(kind, name)] = component
        for alias in aliases:
            self.deprecate(kind, alias, name)
        return component

    def deprecate(self, kind: str, old: str, new: str) -> None:
        """Make ``old`` a former name of ``kind``/``new``: looking it up finds ``new``, with a warning."""
        _check_kind(kind)
        _check_name(old)
        if old == new:
            raise RegistryError(f"{kind} {old!r} cannot be an alias of itself")
        existing = self._aliases.get((kind, old))
        if existing is not None and existing != new:
            raise CollisionError(f"{kind} {old!r} is already an old name of {existing!r}; it cannot also "
                                 f"stand for {new!r}")
        self._aliases[(kind, old)] = new

    def renamed(self, kind: str, name: str) -> str | None:
        """The current name of a former one, or None (registered names are never aliases)."""
        return self._aliases.get((kind, name)) or DEPRECATED_NAMES.get((kind, name))

    # -- lookup -------------------------------------------------------------
    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``; plugins are consulted only if no built-in matches.

        A short name always means the built-in when there is one (a plugin claiming it gets a
        warning); ``DIST:NAME`` picks the component ``NAME`` of the plugin distribution ``DIST``.
        """
        _check_kind(kind)
        self._load_builtins()
        if ":" in name:  # DIST:NAME, with the distribution name compared as pip does
            dist, _, short = name.partition(":")
            name = f"{normalize(dist)}:{short}"
        found = self._entries.get((kind, name))
        if found is not None:
            if self.plugin_source is not None and ":" not in name:
                self.plugin_source.check_no_shadowing(kind, name, found)
            return found
        if self.plugin_source is not None and self.plugin_source.provides(kind, name):
            self.plugin_source.load(kind, name, self)
            found = self._entries.get((kind, name))
            if found is not None:
                return found
        new = self.renamed(kind, name)
        if new is not None:
            if (kind, name) not in self._warned:
                self._warned.add((kind, name))
                warn_deprecated(f"{kind} {name!r} was renamed to {new!r} ({name} → {new}); update the blueprint")
            return self.get(kind, new)
        suggestions = self.suggest(kind, name)
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        available = ", ".join(sorted(n for k, n in self._known_names() if k == kind))
        raise UnknownComponentError(
            f"unknown {kind} {name!r}{hint} (available: {available or 'none'})",
            kind=kind,
            name=name,
            suggestions=suggestions,
        )

    def find(self, name: str, kinds: Iterable[str]) -> Component:
        """Look ``name`` up in several kinds; an unknown name suggests across all of them."""
        kinds = tuple(kinds)
        self._load_builtins()
        hits = []
        for kind in kinds:
            try:
                hits.append(self.get(kind, name))
            except UnknownComponentError:
                continue
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise RegistryError(
                f"{name!r} is ambiguous: registered as " + " and ".join(f"{c.kind} ({c.origin})" for c in hits)
            )
        known = sorted({n for k, n in self._known_names() if k in kinds})
        suggestions = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        raise UnknownComponentError(
            f"unknown component {name!r}{hint} (see `ganforge components"
            + (f" {kinds[0]}`)" if len(kinds) < len(KIND_TABLE) else "`)"),
            kind="/".join(kinds),
            name=name,
            suggestions=suggestions,
        )

    def list(self, kind: str | None = None, pattern: str = "*") -> list[Component]:
        """All components of ``kind`` whose names match the glob ``pattern``; loads every plugin."""
        if kind is not None:
            _check_kind(kind)
        self._load_builtins()
        if self.plugin_source is not None:
            self.plugin_source.load_all(self)
        return sorted(
            (
                c
                for (k, n), c in self._entries.items()
                if (kind is None or k == kind) and fnmatch.fnmatchcase(n, pattern) and not self._duplicate(c)
            ),
            key=lambda c: (list(KIND_TABLE).index(c.kind), c.name),
        )

    def shadows_builtin(self, kind: str, name: str) -> bool:
        """Whether ``kind``/``name`` is taken by a built-in (or in-process ``@register``), not a plugin."""
        self._load_builtins()
        found = self._entries.get((kind, name))
        return found is not None and not found.origin.startswith("plugin ")

    def _duplicate(self, component: Component) -> bool:
        """A qualified entry for the same object that its short name already lists."""
        if ":" not in component.name:
            return False
        short = self._entries.get((component.kind, component.name.partition(":")[2]))
        return short is not None and short.obj is component.obj

    @property
    def broken_plugins(self) -> list[BrokenPlugin]:
        return [] if self.plugin_source is None else list(self.plugin_source.broken)

    def suggest(self, kind: str, name: str) -> list[str]:
        return close_matches(name, (n for k, n in self._known_names() if k == kind))

    def _known_names(self) -> set[tuple[str, str]]:
        names = set(self._entries)
        if self.plugin_source is not None:
            names |= set(self.plugin_source.names())
        return names

    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        for package_name in self.builtin_packages:
            package = importlib.import_module(package_name)
            for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
                importlib.import_module(info.name)
        for kind, name, obj, options in list(_declared):
            if self._accepts_declared(obj):
                self.add(kind, name, obj, **options)

    def _accepts_declared(self, obj: Any) -> bool:
        if self.include_all_declared:
            return True
        module = getattr(obj, "__module__", "") or ""
        return any(module == p or module.startswith(p + ".") for p in self.builtin_packages)


def _check_kind(kind: str) -> None:
    if kind not in KIND_TABLE:
        raise RegistryError(f"unknown component kind {kind!r}; kinds are: {', '.join(KIND_TABLE)}")


def _check_name(name: str, *, qualified: bool = False) -> None:
    if not (NAME_PATTERN.match(name) or (qualified and QUALIFIED_PATTERN.match(name))):
        raise RegistryError(f"invalid component name {name!r}: use {NAME_RULE}")


def _origin_of(obj: Any) -> str:
    module = getattr(obj, "__module__", "") or ""
    return "builtin" if module == "ganforge" or module.startswith("ganforge.") else f"module {module}"


_default: Registry | None = None
_declared: list[tuple[str, str, Any, dict[str, Any]]] = []

DEPRECATED_NAMES: dict[tuple[str, str], str] = {}
"""``(kind, old name) → new name`` for renamed built-ins, consulted by every registry (like timm's
``_deprecated_models``). Prefer ``register(..., aliases=...)`` next to the component itself."""


def warn_deprecated(message: str) -> None:
    """One line on stderr: a renamed component or setting was used under its old name."""
    print(f"warning: deprecated: {message}", file=sys.stderr)


def default_registry() -> Registry:
    """The process-wide registry: built-ins, ``@register``-ed code, and installed plugins (unless disabled)."""
    global _default
    if _default is None:
        _default = Registry(
            builtin_packages=BUILTIN_PACKAGES,
            plugin_source=None if plugins_disabled() else PluginIndex.discover(),
            include_all_declared=True,
        )
    return _default


def register(kind: str, name: str, *, aliases: Iterable[str] = (),
             renamed_settings: dict[str, str] | None = None) -> Callable[[T], T]:
    """Decorator declaring a component under ``kind``/``name``.

    ``aliases``: former names that still find it; ``renamed_settings``: former setting name →
    current one. Both keep old blueprints (and checkpoints embedding them) loading, with a warning.

    Registries pick declarations up when they first look something up; checks run now, so a
    bad signature fails where it is defined.
    """

    def decorate(obj: T) -> T:
        _check_kind(kind)
        _check_name(name)
        check_keyword_only(obj)
        options = {"aliases": tuple(aliases), "renamed_settings": dict(renamed_settings or {})}
        _declared.append((kind, name, obj, options))
        if _default is not None and _default._builtins_loaded:
            _default.add(kind, name, obj, **options)  # type: ignore[arg-type]
        return obj

    return decorate
