"""What a fresh install needs is declared, and the versions last tested are recorded.

Every third-party module ``ganforge/`` imports (at any depth, including imports inside functions)
must come from a distribution the pyproject declares, as a dependency or an extra; otherwise it
only works while another package happens to pull it in (torchvision arrived through timm).
``constraints/tested.txt`` pins every declared distribution, and the README's set-up section
states the versions it holds.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from support import ROOT

CONSTRAINTS = ROOT / "constraints" / "tested.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def canonical(name: str) -> str:
    """PEP 503 name: case and runs of -_. do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return canonical(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip()).group(0))


def declared() -> dict[str, str]:
    """Declared distribution → where (``dependencies`` or ``extra NAME``)."""
    found = {requirement_name(r): "dependencies" for r in PYPROJECT["dependencies"]}
    for extra, requirements in PYPROJECT["optional-dependencies"].items():
        for r in requirements:
            found.setdefault(requirement_name(r), f"extra {extra}")
    return found


def imported_modules(package: Path) -> dict[str, str]:
    """Top-level module → first ``file:line`` that imports it (absolute imports only)."""
    found: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], f"{path.relative_to(package.parent)}:{node.lineno}")
    return found


def undeclared_imports(package: Path) -> list[str]:
    own = {"ganforge", "__future__"}
    distributions = metadata.packages_distributions()
    wanted = declared()
    problems = []
    for module, where in imported_modules(package).items():
        if module in own or module in sys.stdlib_module_names:
            continue
        providers = {canonical(d) for d in distributions.get(module, [])}
        if not providers:
            problems.append(f"{where}: `{module}` comes from no installed distribution")
        elif not providers & wanted.keys():
            problems.append(f"{where}: `{module}` (from {', '.join(sorted(providers))}) is not declared in pyproject.toml")
    return problems


def test_every_third_party_import_is_declared():
    assert undeclared_imports(ROOT / "ganforge") == []


def test_an_undeclared_import_is_caught(tmp_path):
    """The walk sees imports inside functions, and a module that only arrives through another package."""
    package = tmp_path / "ganforge"
    package.mkdir()
    (package / "fine.py").write_text("import os\nimport torch.nn\nfrom . import fine\nfrom ganforge import x\n")
    (package / "sneaky.py").write_text("def f():\n    import pluggy  # pytest's, never declared by us\n")
    assert [p.split(": ", 1)[1] for p in undeclared_imports(package)] == [
        "`pluggy` (from pluggy) is not declared in pyproject.toml"]


def constraint_pins() -> dict[str, str]:
    pins = {}
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;#]*)", line)
        assert match, f"constraints/tested.txt:{number}: not NAME==VERSION: {line!r}"
        pins[canonical(match.group(1))] = match.group(2)
    return pins


def test_constraints_pin_every_declared_distribution():
    pins = constraint_pins()
    assert "ganforge" not in pins  # the project itself is installed from the checkout
    missing = sorted(set(declared()) - set(pins))
    assert missing == [], f"constraints/tested.txt lacks {missing}; regenerate it (see its header)"


def test_constraints_say_how_to_regenerate_them():
    header = CONSTRAINTS.read_text()
    assert "CI_FREEZE=constraints/tested.txt bash .ci/run" in header
    assert '-c constraints/tested.txt' in header


def setup_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("\n## Set-up\n", 1)[1].split("\n## ", 1)[0]


def test_readme_states_the_tested_versions():
    """The set-up section names each direct dependency's tested version, as in the constraints file."""
    section = setup_section()
    pins = constraint_pins()
    stated = {canonical(n): v for n, v in re.findall(r"\b([a-z][a-z0-9_-]*) ([0-9][0-9.]*[0-9])\b", section)}
    for name in [*map(requirement_name, PYPROJECT["dependencies"]), "pytest", "hypothesis"]:
        assert stated.get(name) == pins[name], f"README set-up says {name} {stated.get(name)}, constraints {pins[name]}"
    assert '-c constraints/tested.txt' in section


def test_ci_runs_the_readme_commands_in_a_new_environment():
    result = subprocess.run([sys.executable, str(ROOT / ".ci" / "readme_commands.py")], capture_output=True,
                            text=True, check=True)
    blocks = re.findall(r"^```bash\n(.*?)^```", setup_section(), re.S | re.M)
    assert result.stdout.splitlines() == [blocks[0].strip(), blocks[1].strip()]
    assert result.stdout.splitlines()[0] == 'pip install -e ".[dev]"'  # the default: newest versions allowed
    script = (ROOT / ".ci" / "run").read_text()
    assert 'python3 -m venv "$tmp/venv"' in script and "system-site-packages" not in script
    assert script.index("python3 -m venv") < script.index('eval "$install"') < script.index('eval "$test_command"')


@pytest.mark.parametrize("name", ["torchvision", "pillow"])
def test_directly_imported_libraries_are_declared(name):
    assert declared().get(name) == "dependencies"
