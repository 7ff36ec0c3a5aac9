"""ganforge plot: metrics.jsonl → losses.png, gamma.png, metrics.png."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ganforge.cli import cli as group
from ganforge.errors import GanforgeError
from ganforge.commands.plots import evaluation_series, gamma_series, plot_run, read_log


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, checking its signature and IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def train_line(step: int) -> dict:
    return {"step": step, "time": 1.0 + step, "d_loss": 2.0 - 0.1 * step, "g_loss": -0.5 + 0.05 * step,
            "images_per_s": 100.0, "skipped_images": 0, "lr": {"generator": 2e-4, "discriminator": 2e-4},
            "scalars": {"layers.2.gamma": 0.01 * step, "layers.5.gamma": -0.02 * step, "D.layers.1.gamma": 0.03 * step}}


def eval_line(step: int) -> dict:
    return {"event": "evaluation", "step": step, "time": 5.0, "fid": 80.0 - step, "kid": {"mean": 0.05, "std": 0.01},
            "precision": 0.5, "recall": 0.4, "model": "ema"}


def write_log(run: Path, records: list[dict], tail: str = "") -> Path:
    run.mkdir(parents=True, exist_ok=True)
    log = run / "metrics.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return log


def invoke(*args) -> "object":
    return CliRunner().invoke(group, [str(a) for a in args], catch_exceptions=False)


def test_plot_run_writes_three_figures_and_tolerates_a_truncated_last_line(tmp_path):
    records = [train_line(s) for s in range(1, 11)] + [eval_line(5), eval_line(10)]
    write_log(tmp_path / "run", records, tail='{"step": 11, "d_loss": 1.')
    paths = plot_run(tmp_path / "run", tmp_path / "out")
    assert [p.name for p in paths] == ["losses.png", "gamma.png", "metrics.png"]
    for path in paths:
        assert path.parent == tmp_path / "out"
        width, height = png_size(path)
        assert 300 <= width <= 2000 and 200 <= height <= 1500
    assert not list((tmp_path / "out").glob("*.tmp.png"))


def test_series_read_from_the_log(tmp_path):
    log = write_log(tmp_path, [train_line(1), train_line(2), eval_line(2)], tail="{broken\n")
    records = read_log(log)
    assert len(records) == 3
    gammas = gamma_series(records)
    # train_line writes the generator's keys as older runs did (no "G."): they read as G's.
    assert set(gammas) == {"G.layers.2.gamma", "G.layers.5.gamma", "D.layers.1.gamma"}
    assert gammas["G.layers.5.gamma"] == [(1.0, -0.02), (2.0, -0.04)]
    metrics = evaluation_series(records)
    assert set(metrics) == {"fid", "kid/mean", "kid/std", "precision", "recall"}  # "model" is not a number
    assert metrics["fid"] == [(2.0, 78.0)]


def test_no_evaluation_entries_means_no_metrics_png(tmp_path):
    write_log(tmp_path / "run", [train_line(1), train_line(2)])
    paths = plot_run(tmp_path / "run", tmp_path / "run" / "plots")
    assert [p.name for p in paths] == ["losses.png", "gamma.png"]
    assert not (tmp_path / "run" / "plots" / "metrics.png").exists()


def test_a_broken_line_before_the_end_is_an_error_with_its_line_number(tmp_path):
    log = write_log(tmp_path, [train_line(1)], tail="{oops\n" + json.dumps(train_line(2)) + "\n")
    with pytest.raises(GanforgeError, match=r"metrics\.jsonl:2: not a JSON line"):
        read_log(log)


def test_cli_plot_default_folder_prints_paths(tmp_path):
    run = tmp_path / "run"
    write_log(run, [train_line(s) for s in range(1, 4)] + [eval_line(2), eval_line(3)])
    result = invoke("plot", run)
    assert result.exit_code == 0, result.output
    printed = [Path(line) for line in result.stdout.splitlines()]
    assert printed == [run / "plots" / name for name in ("losses.png", "gamma.png", "metrics.png")]
    assert all(png_size(p) for p in printed)


def test_cli_plot_out_option(tmp_path):
    write_log(tmp_path / "run", [train_line(1)])
    result = invoke("plot", tmp_path / "run", "--out", tmp_path / "figs")
    assert result.exit_code == 0
    assert (tmp_path / "figs" / "losses.png").is_file()


@pytest.mark.parametrize("case", ["no_folder", "no_log", "empty_log"])
def test_cli_plot_bad_run_exits_2_naming_the_file(tmp_path, case):
    run = tmp_path / "run"
    if case != "no_folder":
        run.mkdir()
    if case == "empty_log":
        (run / "metrics.jsonl").write_text("\n")
    result = invoke("plot", run)
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert message.startswith("error: ") and len(message.splitlines()) == 1
    assert str(run if case == "no_folder" else run / "metrics.jsonl") in message
    assert not (run / "plots").exists()


def test_help_does_not_import_matplotlib_or_the_plot_modules():
    code = ("import sys; from ganforge.cli import cli\n"
            "try:\n    cli(['--help'], prog_name='ganforge')\nexcept SystemExit:\n    pass\n"
            "print('LOADED', [m for m in sys.modules if m.split('.')[0] == 'matplotlib'\n"
            "                 or m in ('ganforge.commands.plots', 'ganforge.commands.attention_maps')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED []" in out
    assert "plot" in out and "attention" in out
