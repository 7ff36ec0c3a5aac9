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


def tiny_features_module():  # -> torch.nn.Module
    """A small TorchScript-able stand-in for Inception: 4×4 pooled pixels through a fixed linear map (32 features)."""
    import torch

    class TinyFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.project = torch.nn.Linear(48, 32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.project(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))

    return TinyFeatures()


def save_torchscript(module, path) -> None:
    """Write ``module`` as TorchScript, the format of the bundled Inception file our loader reads.

    torch 2.14 marks ``torch.jit.script``/``save`` deprecated (FutureWarning) in favour of
    ``torch.export``; the stand-ins must stay TorchScript for as long as the shipped weights are.
    """
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.")
        torch.jit.save(torch.jit.script(module), str(path))


def assert_clean_failure(result, *, mentions: tuple[str, ...] = (), seconds: float | None = None,
                         elapsed: float | None = None) -> str:
    """The hostile-input contract: exit 2, exactly one line on stderr, no traceback.

    ``result`` is click's Result or a CompletedProcess. Returns the line so a test can check
    what it names; ``mentions`` must all appear in it. ``elapsed`` checked against ``seconds``.
    """
    code = getattr(result, "exit_code", None)
    if code is None:
        code = result.returncode
    stderr = result.stderr or ""
    output = getattr(result, "output", "") or ""
    assert code == 2, f"exit {code}, stderr: {stderr!r}"
    assert "Traceback" not in stderr and "Traceback" not in output, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    for word in mentions:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    if seconds is not None and elapsed is not None:
        assert elapsed < seconds, f"took {elapsed:.1f} s (limit {seconds} s)"
    return lines[0]


def on_threads(count: int, run, *, times: int = 1) -> list:
    """``run()`` called ``times`` times with torch on ``count`` intra-op threads; the results, in order.

    Several threads are where a backward can sum in a run-dependent order; the previous thread count
    is restored afterwards.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        return [run() for _ in range(times)]
    finally:
        torch.set_num_threads(before)


CHECKPOINT_EVERY_STEP = ["--device", "cpu", "--set", "train.batch_size=4", "--set", "data.size=16",
                         "--set", "train.log_every=1", "--set", "train.sample_every=1000",
                         "--set", "train.checkpoint_every=1", "--set", "train.keep_checkpoints=10"]
"""A tiny run that keeps a checkpoint of every step: what the write-fault and resume-fault tests damage."""


def step_file(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:09d}.pt"


def train_tiny_two_steps(run: Path) -> Path:
    """``tiny.yaml`` for 2 steps into ``run`` with ``CHECKPOINT_EVERY_STEP``: checkpoints 1 and 2, the step-2 grid."""
    from click.testing import CliRunner

    from ganforge.cli import cli

    result = CliRunner().invoke(cli, ["train", str(TINY), "--out", str(run), *CHECKPOINT_EVERY_STEP, "--steps", "2"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return run
