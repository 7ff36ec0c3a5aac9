"""Reading blueprint files: safe YAML, ``extends:`` chains and deep merging.

Every key remembers which file set it, so an error deep in an inherited blueprint
names the file a user has to open.

A blueprint may come from a stranger, so loading is bounded: the shipped blueprints are under
6 KB and about 200 YAML nodes, and the limits below are far above that yet keep the worst case
to seconds. Past a limit the load stops with a BlueprintError naming the file (and ``extends``
when a base is at fault) before any expensive walk or copy.
"""

from __future__ import annotations

import copy
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import BlueprintError, join_path

Origins = dict[str, str]
"""Dotted key path → file (or ``--set``) that gave it its value."""

MAX_FILE_BYTES = 256 * 1024
"""One blueprint file. PyYAML parses roughly 100 KB/s on a loaded machine, so this is seconds."""
MAX_TOTAL_BYTES = 1024 * 1024
"""All files read for one blueprint, ``extends`` included."""
MAX_NODES = 100_000
"""YAML nodes one file may expand to, counting every alias use (defeats "billion laughs")."""
MAX_NESTING = 64
"""Nested mappings/lists in one file; deeper would end in a RecursionError downstream."""
MAX_EXTENDS_DEPTH = 32
"""Files below the given blueprint in any ``extends`` chain."""
MAX_MERGED_NODES = 1_000_000
"""Nodes produced by all ``extends`` merges of one load (bounds wide or repeated bases)."""


# -- reading one file ------------------------------------------------------------------------------

def read_yaml(path: Path, *, limit: int = MAX_FILE_BYTES) -> dict[str, Any]:
    """Parse one regular file of at most ``limit`` bytes; anything but a mapping is an error."""
    file = str(path)
    problem = file_problem(path, limit=limit)
    if problem is not None:
        raise BlueprintError(problem, file=file)
    data = load_yaml_text(_read_bounded(path, limit=limit), file=file)
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


def file_problem(path: Path, *, limit: int = MAX_FILE_BYTES) -> str | None:
    """Why ``path`` cannot be a blueprint, judged by ``stat`` alone (a FIFO or device is never opened)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return "file not found"
    except OSError as err:
        return f"cannot read: {err}"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a blueprint file"
    if not stat.S_ISREG(info.st_mode):
        return f"is a {_file_kind(info.st_mode)}, not a regular file"
    if info.st_size > limit:
        return f"is {info.st_size} bytes; a blueprint file may be at most {limit} bytes"
    return None


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "FIFO (named pipe)", stat.S_ISCHR: "character device", stat.S_ISBLK: "block device",
             stat.S_ISSOCK: "socket"}
    return next((name for test, name in kinds.items() if test(mode)), "special file")


def _read_bounded(path: Path, *, limit: int) -> str:
    """Read at most ``limit`` bytes. Opened non-blocking and re-checked, so a file swapped for a FIFO
    after ``file_problem`` cannot hang the read."""
    file = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise BlueprintError("is not a regular file", file=file)
            raw = handle.read(limit + 1)
    except OSError as err:
        raise BlueprintError(f"cannot read: {err}", file=file) from err
    if len(raw) > limit:
        raise BlueprintError(f"is over {limit} bytes, the most a blueprint file may be", file=file)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BlueprintError(f"cannot read: {err}", file=file) from err


def load_yaml_text(text: str, *, file: str, max_nodes: int = MAX_NODES) -> Any:
    """``yaml.safe_load`` that refuses documents whose aliases expand past ``max_nodes`` nodes.

    The check runs on the composed node graph, before any Python object is built.
    """
    loader = _BoundedLoader(text, max_nodes=max_nodes)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise BlueprintError(f"YAML syntax error at {where}{problem}", file=file) from err
    except BlueprintError as err:
        raise err.located(file=file) from None
    except RecursionError:
        raise BlueprintError(f"nested too deeply (at most {MAX_NESTING} levels)", file=file) from None
    finally:
        loader.dispose()


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, plus a size check between composing the node graph and constructing it."""

    def __init__(self, stream: str, *, max_nodes: int) -> None:
        super().__init__(stream)
        self.max_nodes = max_nodes

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _NodeCounter(self.max_nodes).size(node, depth=0)
        return node


class _NodeCounter:
    """Counts a node graph as if every alias were expanded, in time linear in the graph."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes: dict[int, int] = {}
        self.open: set[int] = set()

    def size(self, node: yaml.Node, *, depth: int) -> int:
        key = id(node)
        if key in self.sizes:
            return self.sizes[key]
        if key in self.open:
            raise BlueprintError(f"an alias refers to a node that contains it ({_at(node)}); "
                                 "recursive structures are not allowed")
        if depth > MAX_NESTING:
            raise BlueprintError(f"nested more than {MAX_NESTING} levels deep ({_at(node)})")
        self.open.add(key)
        total = 1 + sum(self.size(child, depth=depth + 1) for child in _children(node))
        self.open.discard(key)
        if total > self.limit:
            raise BlueprintError(f"expands to more than {self.limit} YAML nodes (counting every alias "
                                 f"use, {_at(node)}); a blueprint needs a few hundred")
        self.sizes[key] = total
        return total


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _at(node: yaml.Node) -> str:
    mark = node.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"


# -- extends ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Merged:
    """One file merged with its bases; ``height`` is the deepest ``extends`` chain below it."""

    document: dict[str, Any]
    origins: Origins
    height: int


@dataclass
class _Load:
    """One top-level load: each file is read and merged once (diamonds stay linear), within budgets."""

    cache: dict[Path, _Merged] = field(default_factory=dict)
    bytes_read: int = 0
    merged_nodes: int = 0


def load_with_extends(path: Path) -> tuple[dict[str, Any], Origins]:
    """Read ``path`` and everything it ``extends:``, merged base-first."""
    merged = _load(Path(path), chain=(), state=_Load())
    return merged.document, merged.origins


def _load(path: Path, *, chain: tuple[Path, ...], state: _Load) -> _Merged:
    resolved = path.resolve()
    if resolved in state.cache:
        return state.cache[resolved]
    state.bytes_read += _regular_size(path)
    if state.bytes_read > MAX_TOTAL_BYTES:
        raise BlueprintError(f"the blueprint and its `extends` bases are over {MAX_TOTAL_BYTES} bytes together",
                             file=str(path))
    data = read_yaml(path)
    bases = _bases(data.pop("extends", None), file=str(path))

    merged: dict[str, Any] = {}  # owned by this call: merged into in place, never shared until cached
    origins: Origins = {}
    height = 0
    for index, base in enumerate(bases):
        where = "extends" if len(bases) == 1 else join_path("extends", index)
        base_path = Path(base) if Path(base).is_absolute() else path.parent / base
        _check_base(base_path, base, chain=(*chain, resolved), file=str(path), where=where)
        below = _load(base_path, chain=(*chain, resolved), state=state)
        if len(chain) + 1 + below.height > MAX_EXTENDS_DEPTH:
            raise _too_deep(base, file=str(path), where=where)
        height = max(height, below.height + 1)
        _merge_into(merged, below.document, origins, below.origins, "")
        _spend(state, merged, file=str(path), where=where)
    own_origins: Origins = {}
    record_origins(data, str(path), own_origins)
    _merge_into(merged, data, origins, own_origins, "")
    state.cache[resolved] = _Merged(merged, origins, height)
    return state.cache[resolved]


def _bases(bases: Any, *, file: str) -> list[str]:
    if bases is None:
        return []
    if isinstance(bases, str):
        return [bases]
    if isinstance(bases, list) and all(isinstance(b, str) for b in bases):
        return bases
    raise BlueprintError("`extends` must be a file path or a list of file paths", path="extends", file=file)


def _check_base(base_path: Path, base: str, *, chain: tuple[Path, ...], file: str, where: str) -> None:
    """Problems with a base are reported at the ``extends`` entry that named it."""
    resolved = base_path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise BlueprintError(f"`extends` cycle: {cycle}", path="extends", file=file)
    if len(chain) > MAX_EXTENDS_DEPTH:
        raise _too_deep(base, file=file, where=where)
    problem = file_problem(base_path)
    if problem == "file not found":
        problem = f"not found (looked for {base_path})"
    if problem is not None:
        joiner = " " if problem.startswith(("is ", "not ")) else ": "
        raise BlueprintError(f"extended blueprint {base!r}{joiner}{problem}", path=where, file=file)


def _regular_size(path: Path) -> int:
    """Size for the per-load budget; anything unreadable is left for ``read_yaml`` to report."""
    try:
        info = path.stat()
    except OSError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def _too_deep(base: str, *, file: str, where: str) -> BlueprintError:
    return BlueprintError(f"`extends` chain through {base!r} is more than {MAX_EXTENDS_DEPTH} files deep",
                          path=where, file=file)


def _spend(state: _Load, merged: dict[str, Any], *, file: str, where: str) -> None:
    state.merged_nodes += _count_nodes(merged)
    if state.merged_nodes > MAX_MERGED_NODES:
        raise BlueprintError(f"merging the `extends` bases produces more than {MAX_MERGED_NODES} nodes",
                             path=where, file=file)


def _count_nodes(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(1 + _count_nodes(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_count_nodes(v) for v in value)
    return 1


# -- merging ---------------------------------------------------------------------------------------

def deep_merge(base: dict[str, Any], override: dict[str, Any], origins: Origins | None = None,
               override_origins: Origins | None = None, _prefix: str = "") -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) is replaced whole.

    A component mapping whose ``type`` changes is replaced whole too: the old component's
    settings mean nothing to the new one. ``null`` sets a value to null. Inputs are not mutated.
    Time is linear in the two documents (each is copied once; origins are updated per replaced node).
    """
    out = _tree_copy(base)
    _merge_into(out, override, origins, override_origins, _prefix)
    return out


def _merge_into(out: dict[str, Any], override: dict[str, Any], origins: Origins | None,
                override_origins: Origins | None, prefix: str) -> None:
    """Merge ``override`` into ``out``, which this merge owns (a private copy with no shared parts)."""
    for key, value in override.items():
        path = join_path(prefix, key)
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not _retyped(out[key], value):
            _merge_into(out[key], value, origins, override_origins, path)
            continue
        if origins is not None and override_origins is not None:
            if key in out:
                for stale in _paths(out[key], path):
                    origins.pop(stale, None)
            origins.update((p, override_origins[p]) for p in _paths(value, path) if p in override_origins)
        out[key] = _tree_copy(value)


def _tree_copy(value: Any) -> Any:
    """Copy mappings and lists without keeping YAML-alias sharing, so merging into one copy never
    changes another place of the document."""
    if isinstance(value, dict):
        return {k: _tree_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tree_copy(v) for v in value]
    return value if isinstance(value, _IMMUTABLE) else copy.deepcopy(value)


_IMMUTABLE = (str, int, float, bool, type(None), bytes)


def _paths(data: Any, prefix: str) -> list[str]:
    """Every dotted path inside ``data`` (itself included), as ``record_origins`` writes them."""
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out.extend(_paths(value, join_path(prefix, str(key))))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            out.extend(_paths(value, join_path(prefix, index)))
    return out


def _retyped(base: dict[str, Any], override: dict[str, Any]) -> bool:
    return "type" in base and "type" in override and base["type"] != override["type"]


def record_origins(data: Any, file: str, origins: Origins, prefix: str = "") -> None:
    """Attribute every path in ``data`` to ``file``; linear in ``data`` as loaded (aliases expanded,
    which ``load_yaml_text`` has bounded)."""
    origins.update(dict.fromkeys(_paths(data, prefix), file))


def origin_of(path: str, origins: Origins, default: str) -> str:
    """The file that set ``path`` or its nearest ancestor present in the document."""
    probe = path
    while probe:
        if probe in origins:
            return origins[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return origins.get("", default)
