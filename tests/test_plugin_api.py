"""The stable API a plugin may import (``ganforge.plugins.PLUGIN_API``): importable, and all the example uses."""

from __future__ import annotations

import ast
import importlib

import pytest

from ganforge.plugins import PLUGIN_API
from support import ROOT

EXAMPLE_SRC = ROOT / "plugins" / "ganforge-example" / "src"


@pytest.mark.parametrize("module", PLUGIN_API)
def test_every_stable_module_imports(module):
    assert importlib.import_module(module).__name__ == module


def test_the_readme_lists_the_stable_api():
    text = (ROOT / "README.md").read_text()
    rule = text[text.index("**What a plugin may import**"):]
    rule = rule[: rule.index("\n11. ")]
    assert all(f"`{module}`" in rule for module in PLUGIN_API)


def test_the_example_plugin_imports_only_the_stable_api():
    used = set()
    for path in EXAMPLE_SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ganforge"):
                used.add(node.module)
            elif isinstance(node, ast.Import):
                used.update(alias.name for alias in node.names if alias.name.startswith("ganforge."))
    used = {name for name in used if not name.startswith("ganforge_example")}
    assert used <= set(PLUGIN_API), sorted(used - set(PLUGIN_API))
