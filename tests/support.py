"""Paths and helpers shared by the tests (import with `from support import ...`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINTS = ROOT / "blueprints"
TINY = (BLUEPRINTS / "tiny.yaml").resolve()


def run_ganforge(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ganforge in a fresh interpreter (for import-time and plugin-discovery checks)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "ganforge", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=timeout)
