"""Reading blueprint files: safe YAML, ``extends:`` chains and deep merging.

Every key remembers which file set it, so an error deep in an inherited blueprint
names the file a user has to open.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ..errors import BlueprintError, join_path

Origins = dict[str, str]
"""Dotted key path → file (or ``--set``) that gave it its value."""


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse one file with the safe loader; anything but a mapping is an error."""
    file = str(path)
    if not path.exists():
        raise BlueprintError("file not found", file=file)
    if path.is_dir():
        raise BlueprintError("is a directory, not a blueprint file", file=file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BlueprintError(f"cannot read: {err}", file=file) from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise BlueprintError(f"YAML syntax error at {where}{problem}", file=file) from err
    if data is None:
        raise BlueprintError("the blueprint is empty", file=file)
    if not isinstance(data, dict):
        raise BlueprintError(
            f"a blueprint must be a mapping of sections, not {type(data).__name__}", file=file
        )
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise BlueprintError(f"section names must be strings, got {bad_keys[0]!r}", file=file)
    return data


def load_with_extends(path: Path, _chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], Origins]:
    """Read ``path`` and everything it ``extends:``, merged base-first."""
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, resolved))
        raise BlueprintError(f"`extends` cycle: {cycle}", path="extends", file=str(path))
    data = read_yaml(path)
    bases = data.pop("extends", None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise BlueprintError("`extends` must be a file path or a list of file paths", path="extends", file=str(path))

    merged: dict[str, Any] = {}
    origins: Origins = {}
    for index, base in enumerate(bases):
        base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
        if not base_path.exists():
            where = "extends" if len(bases) == 1 and isinstance(base, str) else join_path("extends", index)
            raise BlueprintError(f"extended blueprint {base!r} not found (looked for {base_path})",
                                 path=where, file=str(path))
        base_data, base_origins = load_with_extends(base_path, (*_chain, resolved))
        merged = deep_merge(merged, base_data, origins, base_origins)
    own_origins: Origins = {}
    record_origins(data, str(path), own_origins)
    merged = deep_merge(merged, data, origins, own_origins)
    return merged, origins


def deep_merge(base: dict[str, Any], override: dict[str, Any], origins: Origins | None = None,
               override_origins: Origins | None = None, _prefix: str = "") -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) is replaced whole.

    A component mapping whose ``type`` changes is replaced whole too: the old component's
    settings mean nothing to the new one. ``null`` sets a value to null. Inputs are not mutated.
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        path = join_path(_prefix, key)
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not _retyped(out[key], value):
            out[key] = deep_merge(out[key], value, origins, override_origins, path)
        else:
            out[key] = copy.deepcopy(value)
            if origins is not None and override_origins is not None:
                for stale in [p for p in origins if p == path or p.startswith(path + ".") or p.startswith(path + "[")]:
                    del origins[stale]
                origins.update({p: f for p, f in override_origins.items()
                                if p == path or p.startswith(path + ".") or p.startswith(path + "[")})
    return out


def _retyped(base: dict[str, Any], override: dict[str, Any]) -> bool:
    return "type" in base and "type" in override and base["type"] != override["type"]


def record_origins(data: Any, file: str, origins: Origins, prefix: str = "") -> None:
    origins[prefix] = file
    if isinstance(data, dict):
        for key, value in data.items():
            record_origins(value, file, origins, join_path(prefix, str(key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            record_origins(value, file, origins, join_path(prefix, index))


def origin_of(path: str, origins: Origins, default: str) -> str:
    """The file that set ``path`` or its nearest ancestor present in the document."""
    probe = path
    while probe:
        if probe in origins:
            return origins[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return origins.get("", default)
