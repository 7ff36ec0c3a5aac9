"""``--set key.path=value`` overrides, applied to the merged document before validation."""

from __future__ import annotations

import copy
import re
from typing import Any

from ..errors import BlueprintError, join_path
from .loading import Origins, load_yaml_text, record_origins

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^\d+$")


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``generator.blocks.3.channels=128`` → (['generator', 'blocks', 3, 'channels'], 128).

    Values are parsed as YAML (safe loader), so ``64``, ``1e-4``, ``true`` and ``[0, 0.9]`` get their types.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BlueprintError(f"bad --set {text!r}: expected KEY=VALUE, e.g. train.batch_size=64", file="--set")
    parts = key.split(".")
    if not all(_KEY.match(p) for p in parts):
        raise BlueprintError(f"bad --set key {key!r}: use dotted names and list indices, e.g. generator.blocks.3.channels",
                             file="--set")
    try:
        value = load_yaml_text(raw, file="--set") if raw.strip() else ""  # bounded like a blueprint file
    except BlueprintError as err:
        shown = raw if len(raw) <= 80 else raw[:77] + "..."
        raise BlueprintError(f"bad --set value {shown!r}: {err.message}", file="--set",
                             path=join_path(*[int(p) if p.isdigit() else p for p in parts])) from None
    return [int(p) if p.isdigit() else p for p in parts], value


def apply_overrides(document: dict[str, Any], overrides: list[str], origins: Origins | None = None) -> dict[str, Any]:
    """Return a copy of ``document`` with each override applied in order.

    Setting a component's ``type`` to another one (``--set data.type=npz``) replaces that mapping's
    settings, as a type change in an ``extends`` child does (``loading.deep_merge``): the old
    component's keys mean nothing to the new one. Keys given by earlier ``--set`` options inside it
    are set again, so the order of the options does not matter.
    """
    out = copy.deepcopy(document)
    done: list[tuple[list[str | int], Any]] = []
    for text in overrides:
        parts, value = parse_override(text)
        _assign(out, parts, value, origins, earlier=done)
        done.append((parts, value))
    return out


def _assign(out: dict[str, Any], parts: list[str | int], value: Any, origins: Origins | None, *,
            earlier: list[tuple[list[str | int], Any]]) -> None:
    """Set ``parts`` to ``value`` in ``out``; ``earlier`` are the overrides applied before, for a type change."""
    node: Any = out
    parent: Any = None
    for depth, part in enumerate(parts[:-1]):
        here = join_path(*parts[: depth + 1])
        created = isinstance(node, dict) and node.get(part if isinstance(part, str) else str(part)) is None
        parent, node = node, _child(node, part, here, create=True, next_part=parts[depth + 1])
        if created and origins is not None:
            origins[here] = "--set"  # a key that exists only because of this override
    last = parts[-1]
    path = join_path(*parts)
    if isinstance(node, list):
        if not isinstance(last, int) or not 0 <= last <= len(node):
            raise BlueprintError(f"no list item {last} (the list has {len(node)} items; "
                                 f"index {len(node)} appends)", path=path, file="--set")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    elif isinstance(node, dict):
        key = last if isinstance(last, str) else str(last)
        if key == "type" and parent is not None and "type" in node and node["type"] != value:
            _retype(out, parent, parts[:-1], value, origins, earlier=earlier)
            return
        node[key] = value
    else:
        raise BlueprintError(f"cannot set a key inside a {type(node).__name__}", path=path, file="--set")
    if origins is not None:
        _forget(origins, path)
        record_origins(value, "--set", origins, path)


def _retype(out: dict[str, Any], parent: Any, section: list[str | int], value: Any, origins: Origins | None, *,
            earlier: list[tuple[list[str | int], Any]]) -> None:
    """``section`` (inside ``parent``) becomes a new mapping holding only its new ``type``, then the earlier
    ``--set`` keys inside it; a new mapping, not a cleared one, so a place sharing the old one keeps it."""
    slot = section[-1]
    parent[slot if isinstance(parent, list) or isinstance(slot, str) else str(slot)] = {"type": value}
    where = join_path(*section)
    if origins is not None:
        _forget(origins, where)
        origins[where] = origins[join_path(where, "type")] = "--set"  # what it lacks now, --set left out
    # Only what was set inside the section since it (or a parent) was last set whole: a key that a
    # later whole-section --set dropped stays dropped.
    wholes = [i for i, (parts, _) in enumerate(earlier) if parts == section[:len(parts)]]
    for parts, given in earlier[wholes[-1] + 1 if wholes else 0:]:
        if len(parts) > len(section) and parts[:len(section)] == section and parts[len(section)] != "type":
            _assign(out, parts, given, origins, earlier=[])


def _forget(origins: Origins, path: str) -> None:
    """Drop the recorded origins of ``path`` and of everything inside it."""
    for stale in [p for p in origins if p == path or p.startswith(path + ".") or p.startswith(path + "[")]:
        del origins[stale]


def _child(node: Any, part: str | int, here: str, *, create: bool, next_part: str | int) -> Any:
    if isinstance(node, list):
        if not isinstance(part, int) or not 0 <= part < len(node):
            raise BlueprintError(f"no list item {part} (the list has {len(node)} items)", path=here, file="--set")
        return node[part]
    if isinstance(node, dict):
        key = part if isinstance(part, str) else str(part)
        if key not in node or node[key] is None:
            if not create:
                raise BlueprintError("no such key", path=here, file="--set")
            node[key] = {}
        return node[key]
    raise BlueprintError(f"cannot set a key inside a {type(node).__name__}", path=here, file="--set")
