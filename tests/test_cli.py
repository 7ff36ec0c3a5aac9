"""CLI start-up cost and the components listing."""

from __future__ import annotations

import subprocess
import sys
import time

from support import run_ganforge


def test_help_imports_neither_torch_nor_plugins():
    code = ("import sys; from ganforge.cli import cli\n"
            "try:\n    cli(['--help'], prog_name='ganforge')\nexcept SystemExit:\n    pass\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'pydantic', 'yaml')\n"
            "       or m.startswith('ganforge.components.layers') or m == 'ganforge.registry']\n"
            "print('LOADED', bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED []" in out


def test_help_is_fast():
    best = min(_timed(["--help"]) for _ in range(3))
    assert best < 1.0, f"ganforge --help took {best:.2f}s"


def _timed(args):
    start = time.perf_counter()
    assert run_ganforge(*args).returncode == 0
    return time.perf_counter() - start


def test_components_list_kind_and_pattern(cli):
    result = cli("components", "layer", "sn*")
    assert result.exit_code == 0
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["KIND", "NAME", "ORIGIN", "SUMMARY"]
    names = [line.split()[1] for line in lines]
    assert "snconv" in names and all(n.startswith("sn") for n in names)
    assert all(line.split()[0] == "layer" for line in lines)
    everything = cli("components").stdout
    for kind in ("layer", "block", "head", "loss", "update_rule", "optimizer", "dataset", "init"):
        assert f"\n{kind} " in "\n" + everything


def test_components_pattern_without_kind(cli):
    result = cli("components", "*hinge*")
    assert result.exit_code == 0 and "hinge" in result.stdout


def test_components_show(cli):
    result = cli("components", "show", "ttur")
    assert result.exit_code == 0
    assert "update_rule ttur" in result.stdout and "origin: builtin" in result.stdout
    assert "d_lr: float (> 0) (default 0.0004)" in result.stdout
    assert "Two time-scale" in result.stdout
    shown = cli("components", "show", "up_resblock").stdout
    assert "inferred from the stack" in shown and "in_channels" in shown


def test_components_show_unknown_suggests(cli):
    result = cli("components", "show", "snconvv")
    assert result.exit_code == 2 and "did you mean 'snconv'" in result.stderr
