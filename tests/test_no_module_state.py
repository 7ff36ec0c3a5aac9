"""No component keeps module-level mutable state (issue 19).

State shared through a module (a list a head appends to and a loss reads, a WeakSet of layers a
loss adjusts, a global written by a hook) depends on call order, survives between runs in one
process and escapes the checkpoint. Components keep their state on themselves (buffers,
``state_dict``) and exchange it through the engine (records, ``feedback``, controllers). This test
reads every module of ``ganforge/components`` and of the example plugin with ``ast`` and flags:

* a mutable container bound at module level: a list, dict or set display or comprehension, or a
  call of ``list``/``dict``/``set``/``bytearray``, ``defaultdict``/``deque``/``Counter``/
  ``OrderedDict``/``ChainMap`` or ``WeakSet``/``WeakKeyDictionary``/``WeakValueDictionary`` (a
  constant table is wrapped: ``MappingProxyType``, ``frozenset``, ``tuple``); ``__all__`` is allowed;
* a ``global`` statement in a function;
* a name bound at module level and mutated in a function: a mutating method (``.append``,
  ``.add``, ``.update``...), item assignment or deletion (``NAME[k] = v``, ``del NAME[k]``), or an
  attribute assigned on it (``NAME.attr = v``);
* a mutable container in a class body mutated in place by a method (``self.NAME.append``,
  ``cls.NAME[k] = v``) without the instance binding its own: a class attribute is module state too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import ROOT

SCANNED = (ROOT / "ganforge" / "components", ROOT / "plugins" / "ganforge-example" / "src")

MUTABLE_CALLS = frozenset({
    "list", "dict", "set", "bytearray", "defaultdict", "deque", "Counter", "OrderedDict", "ChainMap",
    "WeakSet", "WeakKeyDictionary", "WeakValueDictionary",
})
MUTATING_METHODS = frozenset({
    "append", "extend", "insert", "add", "update", "setdefault", "pop", "popitem", "clear", "remove", "discard",
    "appendleft", "extendleft", "popleft", "sort", "reverse", "intersection_update", "difference_update",
    "symmetric_difference_update", "__setitem__", "__delitem__",
})
ALLOWED_NAMES = frozenset({"__all__"})


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _is_mutable_container(node: ast.expr | None) -> bool:
    if isinstance(node, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)):
        return True
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        return name in MUTABLE_CALLS
    return False


def _targets(node: ast.stmt) -> list[tuple[ast.expr, ast.expr | None]]:
    """(target, value) of an assignment statement; one value for every target."""
    if isinstance(node, ast.Assign):
        return [(target, node.value) for target in node.targets]
    if isinstance(node, ast.AnnAssign):
        return [(node.target, node.value)]
    return []


def _names(target: ast.expr) -> list[ast.Name]:
    if isinstance(target, ast.Name):
        return [target]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _names(element)]
    if isinstance(target, ast.Starred):
        return _names(target.value)
    return []


def _module_statements(body: list[ast.stmt]):
    """The statements run at import: the module body, into if/try/with/for blocks but not defs or classes."""
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody"):
            yield from _module_statements(getattr(node, field, []) or [])
        for handler in getattr(node, "handlers", []) or []:
            yield from _module_statements(handler.body)


def _function_locals(function: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    """Names local to ``function`` (its parameters and names it binds, nested scopes included: an
    over-approximation that can only miss a mutation, never invent one), less those it declares global."""
    args = function.args
    names = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    declared_global: set[str] = set()
    for node in ast.walk(function) if not isinstance(function, ast.Lambda) else ():
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not function:
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Global):
            declared_global |= set(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names - declared_global


def _mutated_base(node: ast.AST) -> tuple[ast.expr, str] | None:
    """The object a statement or call mutates in place, and how."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATING_METHODS:
        return node.func.value, f".{node.func.attr}()"
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
        targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
        for target in targets:
            if isinstance(target, ast.Subscript):
                return target.value, "item assignment" if not isinstance(node, ast.Delete) else "item deletion"
            if isinstance(target, ast.Attribute) and not isinstance(node, ast.Delete):
                return target.value, f"attribute assignment (.{target.attr})"
    return None


def find_module_state(source: str, path: str = "<source>") -> list[Finding]:
    """Every pattern of module-level mutable state in ``source`` (see the module's text)."""
    tree = ast.parse(source, filename=path)
    findings: list[Finding] = []
    module_names: set[str] = set()  # bound by module-level assignment (not imports, defs or classes)
    for node in _module_statements(tree.body):
        for target, value in _targets(node):
            for name in _names(target):
                module_names.add(name.id)
                if name.id not in ALLOWED_NAMES and _is_mutable_container(value):
                    findings.append(Finding(path, node.lineno, f"module-level mutable container {name.id!r}"))
        if isinstance(node, (ast.For, ast.AsyncFor, ast.With, ast.AsyncWith)):
            targets = [node.target] if isinstance(node, (ast.For, ast.AsyncFor)) else \
                [item.optional_vars for item in node.items if item.optional_vars is not None]
            module_names |= {name.id for target in targets for name in _names(target)}

    def visit(node: ast.AST, enclosing: set[str] | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            local = _function_locals(node) | (enclosing or set())
            for child in ast.iter_child_nodes(node):
                visit(child, local)
            return
        if enclosing is not None:  # inside a function
            if isinstance(node, ast.Global):
                findings.append(Finding(path, node.lineno, f"`global {', '.join(node.names)}` in a function"))
            mutated = _mutated_base(node)
            if mutated is not None:
                base, how = mutated
                while isinstance(base, (ast.Subscript, ast.Attribute)):  # NAME[k].append, NAME.attr[k] = v
                    base = base.value
                if isinstance(base, ast.Name) and base.id in module_names and base.id not in enclosing:
                    findings.append(Finding(path, node.lineno, f"module-level {base.id!r} mutated in a function "
                                                               f"({how})"))
        for child in ast.iter_child_nodes(node):
            visit(child, enclosing)

    visit(tree, None)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            findings += _class_state(node, path)
    return sorted(set(findings), key=lambda f: (f.line, f.what))


def _class_state(cls: ast.ClassDef, path: str) -> list[Finding]:
    """Mutable containers in a class body that its methods mutate in place, with no per-instance copy."""
    containers = {name.id: node.lineno for node in cls.body for target, value in _targets(node)
                  if _is_mutable_container(value) for name in _names(target)}
    if not containers:
        return []
    rebound = {target.attr for node in ast.walk(cls) for stmt_target, _ in _targets(node) if isinstance(node, ast.stmt)
               for target in [stmt_target] if isinstance(target, ast.Attribute)
               and isinstance(target.value, ast.Name) and target.value.id == "self"}
    findings = []
    for node in ast.walk(cls):
        mutated = _mutated_base(node)
        if mutated is None:
            continue
        base, how = mutated
        while isinstance(base, ast.Subscript):
            base = base.value
        if (isinstance(base, ast.Attribute) and base.attr in containers and base.attr not in rebound
                and isinstance(base.value, ast.Name) and base.value.id in {"self", "cls", cls.name}):
            findings.append(Finding(path, node.lineno, f"class attribute {cls.name}.{base.attr} (a mutable "
                                                       f"container, line {containers[base.attr]}) mutated ({how})"))
    return findings


KNOWN: dict[tuple[str, str], str] = {}
"""Findings in existing code, reported and awaiting a fix: (file, name) -> what it is. An entry that no
longer matches anything fails ``test_known_exceptions_are_still_present``: remove it."""


def _unexpected(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not any(path == f.path and f"'{name}'" in f.what for path, name in KNOWN)]


def _scanned_files() -> list[Path]:
    return sorted(path for root in SCANNED for path in root.rglob("*.py") if "build" not in path.parts)


# -- the scanner finds each pattern ------------------------------------------------

PLANTED = '''\
import collections
import weakref
from collections import defaultdict

_SEEN = []                                   # 5: list display
_BY_NAME: dict[str, int] = {}                # 6: annotated dict display
_TAGS = set()                                # 7: set()
_LIVE = weakref.WeakSet()                    # 8: WeakSet, through its module
_COUNTS = defaultdict(int)                   # 9: defaultdict
_QUEUE = collections.deque(maxlen=3)         # 10: deque
_SQUARES = {i: i * i for i in range(3)}      # 11: dict comprehension
try:
    _FALLBACK = list(range(2))               # 13: inside a try block, still module level
except ImportError:
    pass
_state = object()
_table = make_table()


def remember(x):
    global _state                             # 21: global statement
    _state = x
    _table.append(x)                          # 23: mutating method on a module name
    _table[x] = 1                             # 24: item assignment
    del _table[x]                             # 25: item deletion
    _table.field = x                          # 26: attribute assignment
    _table["k"].update(x)                     # 27: mutation through an item


class Head:
    instances = []                            # 31: class-level list...

    def __init__(self):
        self.instances.append(self)           # 34: ...mutated through self

    @classmethod
    def forget(cls):
        cls.instances[0] = None               # 38: ...and through cls
'''

CLEAN = '''\
from types import MappingProxyType

__all__ = ["Loss"]
ORDER = ("a", "b")
NAMES = frozenset({"a", "b"})
TABLE = MappingProxyType({"a": 1})
KINDS = tuple(["x", "y"])
_table = make_table()


def local_only(values, _table=None):
    seen = []
    seen.append(values)
    totals = {}
    totals["n"] = len(values)
    _table = {}
    _table["shadowed"] = 1                   # a local of the same name


def reads_module_state():
    return TABLE["a"] + len(ORDER)


class Loss:
    provides = {"code": "per_layer"}         # a class-level dict, read only
    buffers = []

    def __init__(self):
        self.buffers = []                    # every instance has its own
        self.buffers.append(1)
        self.scores = {}
        self.scores["x"] = 1
'''


def test_planted_patterns_are_all_found():
    found = find_module_state(PLANTED, "planted.py")
    assert sorted({f.line for f in found}) == [5, 6, 7, 8, 9, 10, 11, 13, 21, 23, 24, 25, 26, 27, 34, 38], \
        "\n".join(map(str, found))
    whats = {f.line: f.what for f in found}
    assert "'_LIVE'" in whats[8] and "global _state" in whats[21] and "(.append())" in whats[23]
    assert "item assignment" in whats[24] and "item deletion" in whats[25] and ".field" in whats[26]
    assert "Head.instances" in whats[34] and "Head.instances" in whats[38]


def test_allowed_patterns_are_not_flagged():
    assert find_module_state(CLEAN, "clean.py") == []


def test_the_scan_covers_the_components_and_the_example_plugin():
    files = _scanned_files()
    relative = {path.relative_to(ROOT).as_posix() for path in files}
    assert "ganforge/components/layers/ada.py" in relative
    assert "plugins/ganforge-example/src/ganforge_example/noise.py" in relative
    assert len(files) > 40


@pytest.mark.parametrize("path", _scanned_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_level_mutable_state(path: Path):
    found = _unexpected(find_module_state(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix()))
    assert not found, "module-level mutable state (keep it on the component, see this test's text):\n" + \
        "\n".join(map(str, found))


def test_known_exceptions_are_still_present():
    for (relative, name), why in KNOWN.items():
        path = ROOT / relative
        found = find_module_state(path.read_text(encoding="utf-8"), relative) if path.exists() else []
        assert any(f"'{name}'" in f.what for f in found), f"{relative}: {name!r} is fixed ({why}); drop it from KNOWN"
