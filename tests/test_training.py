"""`ganforge train`: exact resume (also after SIGKILL), clean stops, divergence, bad set-ups."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from support import ROOT, TINY, on_threads

FAST = ["--set", "train.batch_size=8", "--set", "data.size=64", "--set", "train.log_every=2",
        "--set", "train.sample_every=1000", "--set", "train.checkpoint_every=2", "--set", "train.keep_checkpoints=10"]


def weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoints" / f"step-{step:09d}.pt", weights_only=True)
    return {**{f"G.{k}": v for k, v in state["generator"].items()},
            **{f"D.{k}": v for k, v in state["discriminator"].items()}}


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def train(cli, out: Path, *extra: str):
    result = cli("train", TINY, "--out", out, "--device", "cpu", *FAST, *extra)
    assert result.exit_code == 0, result.stderr
    return result


@pytest.mark.parametrize("extra, total, split", [
    ((), 6, 4),
    # A regulariser and augmentation draw on the global RNG, EMA carries state (its batch-norm
    # statistics averaged too, the history-dependent choice), and the data stream crosses an epoch
    # boundary (8 batches per epoch) after the resume.
    (("--set", "regularizers=[{type: gradient_penalty, weight: 1.0}]",
      "--set", "update_rule.2={type: ema, decay: 0.5, start: 1, buffers: average}"), 12, 6),
], ids=["plain", "gp-ema-epoch"])
def test_stop_and_resume_matches_an_uninterrupted_run(cli, tmp_path, extra, total, split):
    train(cli, tmp_path / "straight", "--steps", str(total), *extra)
    train(cli, tmp_path / "split", "--steps", str(split), *extra)
    train(cli, tmp_path / "split", "--steps", str(total), "--resume", *extra)
    assert_identical(weights(tmp_path / "straight", total), weights(tmp_path / "split", total))
    if extra:
        ema = [torch.load(run / "checkpoints" / f"step-{total:09d}.pt", weights_only=True)["ema"]
               for run in (tmp_path / "straight", tmp_path / "split")]
        assert_identical(*ema)
        return
    # And the run really trained: weights moved between steps 2 and 6.
    early, late = weights(tmp_path / "straight", 2), weights(tmp_path / "straight", 6)
    assert any(not torch.equal(early[k], late[k]) for k in early if k.endswith("original"))
    log = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6]
    assert {"d_loss", "g_loss", "images_per_s", "lr", "scalars"} <= set(log[-1])
    # γ of each attention layer, declared by the layer itself (tiny has one in G and one in D).
    gammas = sorted(name for name in log[-1]["scalars"] if name.endswith(".gamma"))
    assert gammas == ["D.layers.1.gamma", "G.layers.2.gamma"]
    assert log[-1]["lr"] == {"generator": 3e-3, "discriminator": 3e-3}  # tiny.yaml's ttur


def test_sigkill_then_resume_is_exact(tmp_path):
    straight = tmp_path / "straight"
    base = [sys.executable, "-m", "ganforge", "train", str(TINY), "--device", "cpu", *FAST]
    subprocess.run([*base, "--out", str(straight), "--steps", "8"], check=True, capture_output=True, timeout=300)
    killed = tmp_path / "killed"
    process = subprocess.Popen([*base, "--out", str(killed), "--steps", "8"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / "checkpoints" / f"step-{4:09d}.pt").exists():
        assert process.poll() is None, "run finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = sorted(p.name for p in (killed / "checkpoints").glob("step-*.pt"))
    assert f"step-{8:09d}.pt" not in done
    subprocess.run([*base, "--out", str(killed), "--steps", "8", "--resume"], check=True, capture_output=True,
                   timeout=300)
    assert_identical(weights(straight, 8), weights(killed, 8))


def test_truncated_checkpoint_is_reported_and_the_previous_one_used(cli, tmp_path):
    run = tmp_path / "run"
    train(cli, run, "--steps", "4")
    newest = run / "checkpoints" / f"step-{4:09d}.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    result = train(cli, run, "--steps", "6", "--resume")
    assert "skipping unreadable checkpoint" in result.stderr and "step-000000004.pt" in result.stderr
    assert f"resumed from {run / 'checkpoints' / f'step-{2:09d}.pt'}" in result.stderr


def test_resume_refuses_to_start_over_when_no_checkpoint_is_readable(cli, tmp_path):
    run = tmp_path / "run"
    train(cli, run, "--steps", "2")
    only = run / "checkpoints" / f"step-{2:09d}.pt"
    only.write_bytes(b"garbage")
    result = cli("train", TINY, "--out", run, "--device", "cpu", *FAST, "--steps", "4", "--resume")
    assert result.exit_code == 2 and "none of the checkpoints" in result.stderr
    assert only.read_bytes() == b"garbage"


def test_rotation_never_deletes_the_new_or_a_later_checkpoint(tmp_path):
    from ganforge.engine.checkpoints import list_checkpoints, save_checkpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for later in (5000, 10000):
        (folder / f"step-{later:09d}.pt").write_bytes(b"unreadable, from a longer run")
    for step in (100, 200, 300, 400):
        save_checkpoint(folder, step, {"x": torch.zeros(1)}, keep=2)
    steps = [int(p.name[5:14]) for p in list_checkpoints(folder)]
    assert steps == [300, 400, 5000, 10000]


def test_dataset_smaller_than_a_batch_is_a_clear_error(cli, tmp_path):
    result = cli("train", TINY, "--out", tmp_path / "run", "--device", "cpu", "--steps", "1",
                 "--set", "data.size=4", "--set", "train.batch_size=8")
    assert result.exit_code == 2 and "fewer than one micro-batch" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_finishes_the_step_and_checkpoints(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "ganforge", "train", str(TINY), "--device", "cpu", *FAST,
           "--set", "train.checkpoint_every=1000", "--out", str(run), "--steps", "100000"]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "SIGTERM" in stderr and "continue with --resume" in stderr
    checkpoints = list((run / "checkpoints").glob("step-*.pt"))
    assert len(checkpoints) == 1
    state = torch.load(checkpoints[0], weights_only=True)
    assert 0 < state["step"] < 100000


def test_non_finite_loss_stops_with_the_step_and_keeps_last_good_checkpoint(cli, tmp_path, monkeypatch):
    from ganforge.components.losses.adversarial import Hinge

    original = Hinge.discriminator_loss
    calls = {"n": 0}

    def poisoned(self, *, real, fake):
        calls["n"] += 1
        loss = original(self, real=real, fake=fake)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(Hinge, "discriminator_loss", poisoned)
    run = tmp_path / "run"
    result = cli("train", TINY, "--out", run, "--device", "cpu", *FAST, "--steps", "6")
    assert result.exit_code == 1
    assert "non-finite loss at step 3" in result.stderr and "Traceback" not in result.stderr
    kept = sorted(p.name for p in (run / "checkpoints").glob("step-*.pt"))
    assert kept == [f"step-{2:09d}.pt"]
    state = torch.load(run / "checkpoints" / kept[0], weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())


def test_existing_run_is_not_overwritten_without_resume(cli, tmp_path):
    run = tmp_path / "run"
    train(cli, run, "--steps", "2")
    before = (run / "checkpoints" / f"step-{2:09d}.pt").read_bytes()
    result = cli("train", TINY, "--out", run, "--device", "cpu", *FAST, "--steps", "2")
    assert result.exit_code == 2 and "--resume" in result.stderr
    assert (run / "checkpoints" / f"step-{2:09d}.pt").read_bytes() == before


def test_unwritable_out_is_a_clear_error(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = cli("train", TINY, "--out", blocker / "run", "--device", "cpu", "--steps", "1")
    assert result.exit_code == 2 and "cannot write to --out" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_root_is_reported_before_any_model_is_built(cli, tmp_path, monkeypatch):
    import ganforge.assembly as assembly

    monkeypatch.setattr(assembly.NetworkPlan, "build", lambda *a, **k: pytest.fail("model built"))
    blueprint = ROOT / "blueprints" / "sagan_imagenet128.yaml"
    result = cli("train", blueprint, "--out", tmp_path / "run", "--device", "cpu")
    assert result.exit_code == 2
    assert "data.root is not set" in result.stderr and "--set data.root=" in result.stderr
    result = cli("train", blueprint, "--out", tmp_path / "run", "--set", f"data.root={tmp_path / 'nowhere'}")
    assert result.exit_code == 2 and "is not a directory" in result.stderr
    (tmp_path / "empty").mkdir()
    result = cli("train", blueprint, "--out", tmp_path / "run", "--set", f"data.root={tmp_path / 'empty'}")
    assert result.exit_code == 2 and "no class sub-folders" in result.stderr


def test_samples_are_written(cli, tmp_path):
    run = tmp_path / "run"
    train(cli, run, "--steps", "2", "--set", "train.sample_every=2")
    grid = run / "samples" / f"step-{2:09d}.png"
    assert grid.exists() and grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ema_generator_is_checkpointed(cli, tmp_path):
    run = tmp_path / "run"
    train(cli, run, "--steps", "2", "--set", "update_rule.2={type: ema, decay: 0.5, start: 1}")
    state = torch.load(run / "checkpoints" / f"step-{2:09d}.pt", weights_only=True)
    assert state["ema"] is not None
    g, e = state["generator"], state["ema"]
    moved = [k for k in g if g[k].is_floating_point() and not torch.equal(g[k], e[k])]
    assert moved  # the average lags the live weights


def test_two_process_ddp_keeps_ranks_identical(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29533", str(worker), str(TINY), str(tmp_path)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert_identical(rank0["params"], rank1["params"])
    assert rank0["step"] == rank1["step"] == 3
    assert not rank0["same_data"], "both ranks read the same images"
    state = torch.load(tmp_path / "run" / "checkpoints" / f"step-{3:09d}.pt", weights_only=True)
    assert len(state["rng"]) == 2, "each rank's random state is saved"
    assert state["rng"][0]["noise"] != state["rng"][1]["noise"]


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory"),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ...")])
def test_batch_that_does_not_fit_is_a_clear_error(cli, tmp_path, monkeypatch, error):
    from ganforge.engine.step import GANUpdate

    def too_big(self):
        raise error

    monkeypatch.setattr(GANUpdate, "train_step", too_big)
    result = cli("train", TINY, "--out", tmp_path / "run", "--device", "cpu", *FAST, "--steps", "2")
    assert result.exit_code == 2
    assert "train.batch_size" in result.stderr and "does not fit" in result.stderr
    assert "Traceback" not in result.stderr


def test_failed_checkpoint_write_keeps_earlier_checkpoints(cli, tmp_path, monkeypatch):
    import errno

    import ganforge.engine.checkpoints as checkpoints

    run = tmp_path / "run"
    train(cli, run, "--steps", "2")
    before = (run / "checkpoints" / f"step-{2:09d}.pt").read_bytes()
    real_save = torch.save

    def disk_full(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", disk_full)
    result = cli("train", TINY, "--out", run, "--device", "cpu", *FAST, "--steps", "4", "--resume")
    monkeypatch.setattr(checkpoints.torch, "save", real_save)
    assert result.exit_code == 2
    assert "cannot write checkpoint" in result.stderr and "No space left" in result.stderr
    assert (run / "checkpoints" / f"step-{2:09d}.pt").read_bytes() == before
    assert not list((run / "checkpoints").glob("*.tmp"))


def test_starting_over_keeps_the_previous_log(cli, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 7, "d_loss": 1.0}\n')
    train(cli, run, "--steps", "2")
    kept = list(run.glob("metrics.before-*.jsonl"))
    assert len(kept) == 1 and kept[0].read_text() == '{"step": 7, "d_loss": 1.0}\n'
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["step"] == 2


def test_two_cpu_runs_of_one_seed_are_identical_on_two_threads(tmp_path):
    """tiny at its own batch of 32 on two threads: no operation may sum in a run-dependent order."""
    from ganforge.engine.build import build_trainer
    from ganforge.engine.distributed import place_process

    folders = iter(("a", "b"))

    def three_steps() -> dict[str, torch.Tensor]:
        trainer = build_trainer(str(TINY), placement=place_process("cpu"), out=tmp_path / next(folders), data="real")
        for _ in range(3):
            trainer.train_step()
        return {**trainer.update.generator.state_dict(),
                **{f"D.{k}": v for k, v in trainer.update.discriminator.state_dict().items()}}

    assert_identical(*on_threads(2, three_steps, times=2))
