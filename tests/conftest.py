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


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tiny runs: on a loaded 2-core machine they are several times faster."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    """A TorchScript file standing in for the Inception network (see support.tiny_features_module)."""
    import torch

    from support import save_torchscript, tiny_features_module

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / "stand_in.pt"
    save_torchscript(tiny_features_module(), path)
    return path


@pytest.fixture
def no_inception(monkeypatch, tmp_path):
    """Fail the test if anything loads the Inception network (and point GANFORGE_INCEPTION nowhere)."""
    import ganforge.components.metrics.inception as inception

    def refuse(*args, **kwargs):
        raise AssertionError("Inception was loaded")

    monkeypatch.setattr(inception, "load_inception", refuse)
    monkeypatch.setenv("GANFORGE_INCEPTION", str(tmp_path / "missing.pt"))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Reference statistics of data without a writable root go to $XDG_CACHE_HOME: a session folder
    here, so the suite never fills (or reads stale entries from) the user's ~/.cache. Subprocesses
    inherit it; tests that check the cache location set their own."""
    import os

    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved
