"""Third-party components from the ``ganforge.plugins`` entry-point group.

Each entry point names one component as ``KIND.NAME`` and points at its object::

    [project.entry-points."ganforge.plugins"]
    "layer.coord_conv" = "my_package.layers:CoordConv"

Metadata is read once; a plugin's code is imported only when a blueprint names one of
its components that no built-in provides, or when everything is listed. A plugin that
fails to import or register is recorded as broken and reported; the rest keeps working.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Iterable, Iterator

from .errors import CollisionError, RegistryError

if TYPE_CHECKING:
    from .registry import BrokenPlugin, Component, Registry

GROUP = "ganforge.plugins"
DISABLE_ENV = "GANFORGE_DISABLE_PLUGINS"


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
    def label(self) -> str:
        return f"{self.kind}.{self.name} = {self.value}"


@dataclass
class PluginIndex:
    """Entry-point metadata, indexed by (kind, name), and the record of broken plugins."""

    entries: dict[tuple[str, str], list[PluginEntry]] = field(default_factory=dict)
    broken: list["BrokenPlugin"] = field(default_factory=list)
    _failed: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def discover(cls) -> "PluginIndex":
        return cls.from_entry_points(metadata.entry_points(group=GROUP))

    @classmethod
    def from_entry_points(cls, eps: Iterable[metadata.EntryPoint]) -> "PluginIndex":
        from .registry import KINDS, NAME_PATTERN, BrokenPlugin

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
            if kind not in KINDS or not NAME_PATTERN.match(name):
                index.broken.append(
                    BrokenPlugin(
                        dist_name,
                        ep.name,
                        f"entry point name must be KIND.NAME with KIND one of {', '.join(KINDS)} "
                        "and NAME lowercase letters, digits and '_'",
                    )
                )
                continue
            entry = PluginEntry(kind=kind, name=name, value=ep.value, distribution=dist_name, version=version)
            index.entries.setdefault((kind, name), []).append(entry)
        return index

    def names(self) -> Iterator[tuple[str, str]]:
        return iter(self.entries)

    def provides(self, kind: str, name: str) -> bool:
        return (kind, name) in self.entries

    def check_no_shadowing(self, kind: str, name: str, builtin: "Component") -> None:
        """A plugin claiming a built-in's name is a collision, never a silent override."""
        for entry in self.entries.get((kind, name), []):
            if entry.value != builtin.qualname:
                raise CollisionError(
                    f"{kind} {name!r} is registered by {builtin.origin} ({builtin.qualname}) "
                    f"and also claimed by {entry.origin} ({entry.value}); uninstall one or rename it"
                )

    def load(self, kind: str, name: str, registry: "Registry") -> None:
        """Import the one plugin object that provides ``kind``/``name`` and register it."""
        key = (kind, name)
        if key in self._failed:
            raise RegistryError(self._failed[key])
        candidates = self.entries[key]
        if len({c.value for c in candidates}) > 1:
            message = f"{kind} {name!r} is claimed by several plugins: " + "; ".join(
                f"{c.origin} ({c.value})" for c in candidates
            )
            self._fail(key, candidates[0], message)
            raise CollisionError(message)
        entry = candidates[0]
        try:
            obj = metadata.EntryPoint(name=f"{kind}.{name}", value=entry.value, group=GROUP).load()
            registry.add(kind, name, obj, origin=entry.origin)
        except Exception as err:  # a broken plugin must not take the host down
            message = f"{entry.origin} failed to load {entry.label}: {type(err).__name__}: {err}"
            self._fail(key, entry, message)
            raise RegistryError(message) from err

    def load_all(self, registry: "Registry") -> None:
        for kind, name in list(self.entries):
            if (kind, name) in self._failed:
                continue
            try:
                registry.get(kind, name)
            except RegistryError as err:
                if (kind, name) not in self._failed:  # e.g. a plugin shadowing a built-in
                    self._fail((kind, name), self.entries[(kind, name)][0], str(err))

    def _fail(self, key: tuple[str, str], entry: PluginEntry, message: str) -> None:
        from .registry import BrokenPlugin

        self._failed[key] = message
        self.broken.append(BrokenPlugin(entry.distribution, entry.label, message))
