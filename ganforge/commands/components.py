"""``ganforge components``: what the registry holds, by kind and glob, or one component in full."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..contracts import KIND_TABLE
from ..errors import GanforgeError

if TYPE_CHECKING:
    from ..registry import Registry


def list_components(registry: "Registry", words: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``[KIND] [PATTERN]`` as a table; returns (lines for stdout, lines for stderr)."""
    if len(words) > 2:
        raise GanforgeError("usage: ganforge components [KIND] [PATTERN]")
    kind = words[0] if words and words[0] in KIND_TABLE else None
    rest = words[1:] if kind else words
    if kind is None and len(words) == 2:
        raise GanforgeError(f"unknown component kind {words[0]!r}; kinds are: {', '.join(KIND_TABLE)}")
    rows = registry.list(kind, rest[0] if rest else "*")
    width = max((len(c.name) for c in rows), default=4)
    origin_width = max([28, *(len(c.origin) for c in rows)])
    out = []
    if rows:  # a header row, aligned with the columns below it
        out.append(f"{'KIND':<12} {'NAME':<{width}}  {'ORIGIN':<{origin_width}} SUMMARY".rstrip())
    out += [f"{c.kind:<12} {c.name:<{width}}  {c.origin:<{origin_width}} {c.summary}" for c in rows]
    err = [] if rows else ["no components match"]
    err += [f"broken plugin {b.distribution} ({b.entry_point}): {b.error}" for b in registry.broken_plugins]
    return out, err


def show_component(registry: "Registry", name: str) -> str:
    """``show NAME`` (or ``KIND.NAME``): origin, inferred context, settings with defaults, documentation."""
    kind, _, bare = name.rpartition(".")
    component = registry.get(kind, bare) if kind else registry.find(name, KIND_TABLE)
    lines = [f"{component.kind} {component.name}", f"  origin: {component.origin} ({component.qualname})"]
    if component.context_params:
        lines.append(f"  inferred from the stack: {', '.join(sorted(component.context_params))}")
    lines.append("  settings:")
    params = component.parameters()
    for p in params:
        default = "required" if p.required else f"default {p.default!r}"
        lines.append(f"    {p.name}: {p.annotation} ({default})")
    if not params:
        lines.append("    (none)")
    if component.doc:
        lines.append("")
        lines += ["  " + line for line in component.doc.splitlines()]
    return "\n".join(lines)
