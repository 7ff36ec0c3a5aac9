from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner


@pytest.fixture
def cli():
    """Run ganforge in-process; returns click's Result (exit_code, stdout, stderr)."""
    from ganforge.cli import cli as group

    runner = CliRunner()

    def run(*args: str, **kwargs):
        return runner.invoke(group, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return run


@pytest.fixture
def write(tmp_path: Path):
    """Write a text file under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write
