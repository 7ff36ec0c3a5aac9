"""The package's layers point down only, and no two modules import each other (even indirectly).

Every ``import`` in ``ganforge/`` counts, including those inside functions: a lazy import is still
a dependency. Imports under ``if TYPE_CHECKING:`` are annotations only and are left out. The
README's Layout section lists the same layers (checked below).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from support import ROOT

PACKAGE = ROOT / "ganforge"

# Lowest first. A module belongs to the first layer with a prefix matching its dotted name; it may
# import its own layer and the ones before it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("ganforge.errors", "ganforge.hashing", "ganforge.json_depth", "ganforge.kinds",
                    "ganforge.records", "ganforge.seeds", "ganforge.sharding", "ganforge.version")),
    ("registry", ("ganforge.registry", "ganforge.contracts", "ganforge.plugins")),
    ("blueprint", ("ganforge.blueprint",)),
    ("components", ("ganforge.components",)),
    ("assembly", ("ganforge.assembly", "ganforge.memory_estimate")),
    ("engine", ("ganforge.engine",)),
    ("libraries", ("ganforge.sampling", "ganforge.evaluation")),
    ("commands", ("ganforge.commands",)),
    ("cli", ("ganforge.cli", "ganforge.__main__", "ganforge")),
]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to the README's Layout)")


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE) -> dict[str, int]:
    """The package's own modules ``path`` imports (deepest known module of each import) → first line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_lines(tree)
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{alias.name}" for alias in node.names]  # a submodule, or a name in ``base``
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != me:
                found.setdefault(name, node.lineno)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, int]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    return {name: imports_of(path, set(files), root) for name, path in files.items()}


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        for target, line in targets.items():
            if layer_of(target) > layer_of(module):
                found.append(f"{module}:{line} imports {target} "
                             f"({LAYERS[layer_of(module)][0]} → {LAYERS[layer_of(target)][0]})")
    return found


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_no_import_points_up():
    assert upward_imports(import_graph()) == []


def test_every_module_has_a_layer():
    for module in import_graph():
        layer_of(module)


def test_the_checks_catch_a_circle_and_an_upward_import(tmp_path):
    package = tmp_path / "ganforge"
    (package / "engine").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "errors.py").write_text("def f():\n    from .engine import loop  # upward, lazily\n")
    (package / "engine" / "__init__.py").write_text("")
    (package / "engine" / "loop.py").write_text("from . import schedule, step\n")
    (package / "engine" / "schedule.py").write_text("")
    (package / "engine" / "step.py").write_text(
        "from typing import TYPE_CHECKING\nfrom ganforge.engine.loop import x\n"
        "if TYPE_CHECKING:\n    from ganforge import cli\n")
    graph = import_graph(package)
    assert cycles(graph) == [["ganforge.engine.loop", "ganforge.engine.step"]]
    assert upward_imports(graph) == ["ganforge.errors:2 imports ganforge.engine.loop (foundation → engine)"]


@pytest.mark.parametrize("name", [name for name, _ in LAYERS])
def test_readme_layout_names_every_layer(name):
    text = (ROOT / "README.md").read_text()
    layout = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    assert f"**{name}**" in layout
