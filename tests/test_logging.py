"""Logging a user can watch (issue 12 §2) and --resume's step target (§3).

TensorBoard events read back with TensorBoard's own reader, the progress line from step 1, an ETA
from the recent speed, a sample grid at step 0, γ keys alike for both networks, no single-point
panels in metrics.png, and `--resume` without `--steps` going to the run's own target.
"""

from __future__ import annotations

import json
import shutil
import struct
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from support import TINY

# train.steps=5 so that the blueprint's count and the run's --steps (3) differ.
FAST = ["--device", "cpu", "--set", "train.batch_size=4", "--set", "data.size=16", "--set", "train.log_every=2",
        "--set", "train.sample_every=1000", "--set", "train.checkpoint_every=2", "--set", "train.keep_checkpoints=10",
        "--set", "train.steps=5"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def invoke(*args):  # type: ignore[no-untyped-def]
    from ganforge.cli import cli as group

    return CliRunner().invoke(group, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One tiny run of 3 steps for the whole file: logs at 2 and 3, checkpoints at 2 and 3."""
    run = tmp_path_factory.mktemp("logging") / "run"
    result = invoke("train", TINY, "--out", run, *FAST, "--steps", "3")
    assert result.exit_code == 0, result.stderr
    return run, result.stderr


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of the trained run."""
    return Path(shutil.copytree(trained[0], tmp_path / "run"))


def checkpoint_steps(run: Path) -> list[int]:
    return sorted(int(p.name[5:14]) for p in (run / "checkpoints").glob("step-*.pt"))


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


# -- TensorBoard ------------------------------------------------------------------------------------------
def test_tensorboard_events_read_back_with_tensorboards_reader(trained):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    run, _ = trained
    board = EventAccumulator(str(run / "tensorboard"), size_guidance={IMAGES: 0})
    board.Reload()
    tags = board.Tags()
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    expected = {"d_loss", "g_loss", "images_per_s", "lr/generator", "lr/discriminator",
                *(f"scalars/{name}" for name in log[-1]["scalars"])}
    assert len(expected) == 7 and expected <= set(tags["scalars"]), tags["scalars"]  # γ of G's and D's layer
    d_loss = board.Scalars("d_loss")
    assert [e.step for e in d_loss] == [r["step"] for r in log] == [2, 3]
    assert [e.value for e in d_loss] == pytest.approx([r["d_loss"] for r in log])
    assert [e.value for e in board.Scalars("lr/discriminator")] == pytest.approx(
        [r["lr"]["discriminator"] for r in log], rel=1e-6)
    # The sample grids (step 0, before training, and the last step) as images, the PNGs' size.
    assert "samples" in tags["images"], tags["images"]
    images = board.Images("samples")
    assert [e.step for e in images] == [0, 3]
    width, height = png_size(run / "samples" / f"step-{3:09d}.png")
    assert (images[-1].width, images[-1].height) == (width, height)
    assert images[-1].encoded_image_string.startswith(b"\x89PNG")


# -- the progress line -------------------------------------------------------------------------------------
def test_progress_is_shown_from_step_1_then_every_log_every(trained):
    _, stderr = trained
    shown = [line.split(" step ")[1].split(" ")[0] for line in stderr.splitlines() if " step " in line
             and line.startswith("[")]
    assert shown == ["1/3", "2/3", "3/3"], stderr


def test_eta_after_a_resume_uses_the_recent_speed(monkeypatch, capsys):
    """Resumed at 500 of 1000: a slow start (600 s to the first step), then 0.1 s per step."""
    from ganforge.engine import run_log

    now = [0.0]
    monkeypatch.setattr(run_log, "time", types.SimpleNamespace(perf_counter=lambda: now[0], time=lambda: 0.0))
    monkeypatch.setattr(run_log.sys.stderr, "isatty", lambda: False, raising=False)
    progress = run_log.Progress(total=1000, start=500, enabled=True)
    now[0] = 600.0
    progress.update(501, 10.0, {"d": 1.0})
    for step in range(520, 601, 20):
        now[0] += 2.0 if step > 520 else 1.9
        progress.update(step, 10.0, {"d": 1.0})
    lines = capsys.readouterr().err.strip().splitlines()
    assert "step 600/1000" in lines[-1]
    assert "ETA 0:00:40" in lines[-1], lines[-1]  # 400 steps at 10 steps/s, not 40 min from the slow start


def test_eta_window_follows_a_change_of_speed():
    from ganforge.engine.run_log import Progress

    now = [0.0]
    progress = Progress(total=10_000, start=0, enabled=False, window=3, clock=lambda: now[0])
    for step in range(100, 1001, 100):  # 1 s per 100 steps, then ten times slower
        now[0] += 1.0 if step <= 500 else 10.0
        progress.mark(step)
    assert progress.eta(1000) == pytest.approx(9000 * 10.0 / 100)


# -- samples at step 0 -------------------------------------------------------------------------------------
def test_sample_grid_at_step_0_and_a_resume_keeps_it(run):
    grid = run / "samples" / f"step-{0:09d}.png"
    assert png_size(grid) == png_size(run / "samples" / f"step-{3:09d}.png")
    grid.write_bytes(b"written by the first run")
    result = invoke("train", TINY, "--out", run, *FAST, "--steps", "4", "--resume")
    assert result.exit_code == 0, result.stderr
    assert checkpoint_steps(run) == [2, 3, 4]  # --steps given again: it wins over the recorded 3
    assert grid.read_bytes() == b"written by the first run"


# -- γ keys ------------------------------------------------------------------------------------------------
def test_gamma_keys_name_their_network_alike(trained):
    from ganforge.commands.plots import gamma_series, read_log

    run, _ = trained
    records = read_log(run / "metrics.jsonl")
    names = sorted(records[-1]["scalars"])  # tiny has one attention layer in each network
    assert [name[:2] for name in names] == ["D.", "G."] and all(n.endswith(".gamma") for n in names), names
    assert set(gamma_series(records)) == set(names)


# -- metrics.png -------------------------------------------------------------------------------------------
def test_metrics_png_has_no_single_point_panels(tmp_path):
    from ganforge.commands.plots import plot_metrics

    def evaluation(step: int, **values: float) -> dict:
        return {"event": "evaluation", "step": step, "time": 1.0, **values}

    # fid at two steps: one panel (500 px wide); kid only once: no panel.
    path = plot_metrics([evaluation(2, fid=80.0, kid=0.1), evaluation(4, fid=70.0)], tmp_path / "metrics.png")
    assert path is not None and png_size(path)[0] == 500
    assert plot_metrics([evaluation(2, fid=80.0, kid=0.1)], tmp_path / "single.png") is None
    assert not (tmp_path / "single.png").exists()


# -- --resume without --steps --------------------------------------------------------------------------------
def test_resume_without_steps_trains_to_the_runs_own_steps(run):
    from ganforge.engine.checkpoints import read_checkpoint

    assert read_checkpoint(run / "checkpoints" / f"step-{3:09d}.pt").extra["target_steps"] == 3
    (run / "checkpoints" / f"step-{3:09d}.pt").unlink()
    result = invoke("train", TINY, "--out", run, *FAST, "--resume")  # the blueprint says 5 (train.steps)
    assert result.exit_code == 0, result.stderr
    assert checkpoint_steps(run) == [2, 3]
    assert "training to step 3" in result.stderr


@pytest.mark.parametrize("damage", ["truncated", "gone"])
def test_a_sample_grid_that_cannot_be_read_back_is_left_out_of_tensorboard(tmp_path, damage):
    """Another process rewrote (or removed) the grid between write and read-back (issue 22, two runs in one
    folder: PIL's 'broken data stream' was a traceback): the run goes on, TensorBoard without that image."""
    pytest.importorskip("tensorboard")
    from PIL import Image

    from ganforge.engine.run_log import RunLog

    log = RunLog(tmp_path / "metrics.jsonl", resume_from_step=None)
    grid = tmp_path / "step-000000000.png"
    Image.new("RGB", (8, 8)).save(grid)
    if damage == "truncated":
        grid.write_bytes(grid.read_bytes()[:60])
    else:
        grid.unlink()
    log.image_file("samples", grid, 0)
    log.close()
