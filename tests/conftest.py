from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINTS = ROOT / "blueprints"


@pytest.fixture
def cli():
    """Run ganforge in-process; returns click's Result (exit_code, stdout, stderr)."""
    from ganforge.cli import cli as group

    runner = CliRunner()

    def run(*args: str, **kwargs):
        return runner.invoke(group, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return run


def run_ganforge(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ganforge in a fresh interpreter (for import-time and plugin-discovery checks)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "ganforge", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=timeout)


@pytest.fixture
def write(tmp_path: Path):
    """Write a text file under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write


TINY = (BLUEPRINTS / "tiny.yaml").resolve()
