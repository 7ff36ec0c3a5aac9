"""Third-party components from the ``ganforge.plugins`` entry-point group.

Each entry point names one component as ``KIND.NAME`` and points at its object::

    [project.entry-points."ganforge.plugins"]
    "layer.coord_conv" = "my_package.layers:CoordConv"

Metadata is read once; a plugin's code is imported only when a blueprint names one of
its components that no built-in provides, or when everything is listed. A plugin that
fails to import or register (an exception, ``sys.exit()``, or a component that breaks its
kind's contract, see ``ganforge.contracts``) is recorded as broken and reported; the rest keeps
working. A plugin never replaces a built-in: the short name stays the built-in's, and
``DIST:NAME`` (``my-pkg:hinge``) selects a particular plugin's component.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterable, Iterator, Protocol

from .contracts import KIND_TABLE, ContractError, check_contract
from .errors import CollisionError, RegistryError
from .kinds import NAME_PATTERN, NAME_RULE, BrokenPlugin

GROUP = "ganforge.plugins"
DISABLE_ENV = "GANFORGE_DISABLE_PLUGINS"
QUALIFIER = ":"
"""``DIST:NAME`` names the component ``NAME`` of the installed distribution ``DIST`` explicitly."""


PLUGIN_API: tuple[str, ...] = (
    "ganforge.registry",
    "ganforge.records",
    "ganforge.contracts",
    "ganforge.errors",
    "ganforge.components.layers.spectral_norm",
    "ganforge.components.losses.adversarial",
    "ganforge.components.optim.update_rules",
)
"""The modules a plugin may import: kept stable across versions (README, Writing a plugin, rule 10)."""


class Builtin(Protocol):
    """What the index needs of a built-in component: where its code lives."""

    @property
    def qualname(self) -> str: ...


class ComponentSink(Protocol):
    """What the index needs of the registry it loads into (``ganforge.registry.Registry``)."""

    def add(self, kind: str, name: str, obj: Callable[..., Any], *, origin: str | None = None) -> Any: ...

    def get(self, kind: str, name: str) -> Any: ...

    def shadows_builtin(self, kind: str, name: str) -> bool: ...


def normalize(distribution: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``My_Pkg`` and ``my-pkg`` are one package."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def plugins_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class PluginEntry:
    """One entry point: which component it claims and where its code lives."""

    kind: str
    name: str
    value: str
    distribution: str
    version: str

    @property
    def origin(self) -> str:
        return f"plugin {self.distribution} {self.version}".strip()

    @property
    def qualified_name(self) -> str:
        return f"{normalize(self.distribution)}{QUALIFIER}{self.name}"

    @property
    def label(self) -> str:
        return f"{self.kind}.{self.name} = {self.value}"


@dataclass
class PluginIndex:
    """Entry-point metadata, indexed by (kind, name), and the record of broken plugins."""

    entries: dict[tuple[str, str], list[PluginEntry]] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)
    _failed: dict[tuple[str, str], str] = field(default_factory=dict)
    _warned: set[tuple[str, str, str]] = field(default_factory=set)

    @classmethod
    def discover(cls) -> "PluginIndex":
        return cls.from_entry_points(metadata.entry_points(group=GROUP))

    @classmethod
    def from_entry_points(cls, eps: Iterable[metadata.EntryPoint]) -> "PluginIndex":
        index = cls()
        seen: set[tuple[str, str]] = set()
        for ep in eps:
            # Editable installs can list the same entry point twice: same (name, value) is one entry.
            if (ep.name, ep.value) in seen:
                continue
            seen.add((ep.name, ep.value))
            dist = getattr(ep, "dist", None)
            dist_name = getattr(dist, "name", None) or "unknown distribution"
            version = getattr(dist, "version", "") or ""
            kind, _, name = ep.name.partition(".")
            if kind not in KIND_TABLE or not NAME_PATTERN.match(name):
                index.broken.append(
                    BrokenPlugin(
                        dist_name,
                        ep.name,
                        f"entry point name must be KIND.NAME with KIND one of {', '.join(KIND_TABLE)} "
                        f"and NAME {NAME_RULE}",
                    )
                )
                continue
            entry = PluginEntry(kind=kind, name=name, value=ep.value, distribution=dist_name, version=version)
            index.entries.setdefault((kind, name), []).append(entry)
        return index

    def names(self) -> Iterator[tuple[str, str]]:
        return iter(self.entries)

    def provides(self, kind: str, name: str) -> bool:
        if QUALIFIER in name:
            dist, _, short = name.partition(QUALIFIER)
            return self._entry_of(kind, dist, short) is not None
        return (kind, name) in self.entries

    def check_no_shadowing(self, kind: str, name: str, builtin: Builtin) -> None:
        """A plugin claiming a built-in's name never replaces it: the short name stays the built-in's.

        Warns once (one line on stderr) naming both, and how to pick the plugin's version.
        """
        for entry in self.entries.get((kind, name), []):
            if entry.value == builtin.qualname or (kind, name, entry.distribution) in self._warned:
                continue
            self._warned.add((kind, name, entry.distribution))
            print(
                f"warning: {entry.origin} also registers {kind} {name!r} ({entry.value}); {name!r} stays the "
                f"{builtin.origin} one ({builtin.qualname}), write {entry.qualified_name!r} for the plugin's",
                file=sys.stderr,
            )

    def load(self, kind: str, name: str, registry: ComponentSink) -> None:
        """Import the plugin object that provides ``kind``/``name`` and register it.

        ``name`` is a short name (``hinge``), provided by exactly one plugin, or a qualified
        one (``DIST:NAME``) that picks one plugin's component.
        """
        if QUALIFIER in name:
            dist, _, short = name.partition(QUALIFIER)
            entry = self._entry_of(kind, dist, short)
            if entry is None:
                return  # the registry reports the unknown name
            self._load_entry(kind, entry.qualified_name, entry, registry)
            return
        key = (kind, name)
        if key in self._failed:
            raise RegistryError(self._failed[key])
        candidates = self.entries[key]
        if len({c.value for c in candidates}) > 1:
            # The package that registered the name second is the one colliding; name the first too.
            culprit = candidates[-1]
            others = "; ".join(f"{c.origin} ({c.value})" for c in candidates[:-1])
            choices = " or ".join(repr(c.qualified_name) for c in candidates)
            message = (
                f"{culprit.origin} ({culprit.value}) registers {kind} {name!r}, already registered by {others}; "
                f"write {choices} to pick one"
            )
            self._fail(key, culprit, message)
            raise CollisionError(message)
        self._load_entry(kind, name, candidates[0], registry)

    def _load_entry(self, kind: str, name: str, entry: PluginEntry, registry: ComponentSink) -> None:
        key = (kind, name)
        if key in self._failed:
            raise RegistryError(self._failed[key])
        try:
            obj = metadata.EntryPoint(name=f"{entry.kind}.{entry.name}", value=entry.value, group=GROUP).load()
            check_contract(kind, obj)
            registry.add(kind, name, obj, origin=entry.origin)
        except (Exception, SystemExit) as err:  # a broken plugin must not take the host down (Ctrl-C still does)
            if isinstance(err, SystemExit):
                reason = f"called sys.exit({err.code!r}) while loading"
            elif isinstance(err, ContractError):
                reason = f"breaks the {kind} contract: {err}"
            else:
                reason = f"{type(err).__name__}: {err}"
            message = f"{entry.origin} failed to load {entry.label}: {reason}"
            self._fail(key, entry, message)
            raise RegistryError(message) from err

    def load_all(self, registry: ComponentSink) -> None:
        for kind, name in list(self.entries):
            candidates = self.entries[(kind, name)]
            if (kind, name) not in self._failed:
                try:
                    registry.get(kind, name)
                except RegistryError as err:
                    if (kind, name) not in self._failed:
                        self._fail((kind, name), candidates[-1], str(err))
            if len(candidates) > 1 or registry.shadows_builtin(kind, name):
                for entry in candidates:  # each still selectable by its qualified name
                    try:
                        registry.get(kind, entry.qualified_name)
                    except RegistryError:
                        pass  # recorded in self.broken

    def _entry_of(self, kind: str, dist: str, name: str) -> PluginEntry | None:
        wanted = normalize(dist)
        for entry in self.entries.get((kind, name), []):
            if normalize(entry.distribution) == wanted:
                return entry
        return None

    def _fail(self, key: tuple[str, str], entry: PluginEntry, message: str) -> None:
        self._failed[key] = message
        self.broken.append(BrokenPlugin(entry.distribution, entry.label, message))
