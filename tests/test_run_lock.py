"""Issue 23 §4: a run folder is locked while a process trains in it (``ganforge.engine.run_lock``).

A second trainer is refused before it writes anything, with one line naming the holder; the lock is
gone after a normal end, an error and a SIGKILL (the kernel drops a dead process's ``flock``); under
torchrun only rank 0 takes it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import ROOT, TINY, assert_clean_failure

from ganforge.engine.run_lock import HOLDER_NAME, LOCK_NAME, RunLock

FAST = ["--device", "cpu", "--set", "train.batch_size=8", "--set", "data.size=64", "--set", "train.log_every=1",
        "--set", "train.sample_every=1000", "--set", "train.checkpoint_every=1", "--set", "train.keep_checkpoints=3"]


def lock_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.glob(".ganforge.lock*"))


def checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("step-*.pt"))


@pytest.fixture
def seen_while_training(monkeypatch):
    """The lock files in the run folder as training starts (``loop.train``, which ``Trainer.run`` calls)."""
    import ganforge.engine.loop as loop

    seen: list[list[str]] = []
    original = loop.train

    def train(run):  # type: ignore[no-untyped-def]
        seen.append(lock_files(run.run_dir.root))
        return original(run)

    monkeypatch.setattr(loop, "train", train)
    return seen


@pytest.fixture
def held(tmp_path):
    """A run folder this test process holds the lock on, as another trainer would."""
    lock = RunLock(root=tmp_path / "run")
    lock.acquire()
    yield lock
    lock.release()


def refusal_words(lock: RunLock) -> tuple[str, ...]:
    return (f"{lock.root}: another ganforge process is training in this folder", f"pid {os.getpid()} on",
            socket.gethostname(), f"lock {lock.root / LOCK_NAME}", "wait for it or use another --out")


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_a_second_trainer_is_refused_with_one_line_naming_the_holder(cli, held, resume):
    before = sorted(p.name for p in held.root.iterdir())
    result = cli("train", TINY, "--out", held.root, "--steps", "2", *FAST, *(["--resume"] if resume else []))
    line = assert_clean_failure(result, mentions=refusal_words(held))
    assert line.startswith(f"error: {held.root}: another ganforge process")
    assert sorted(p.name for p in held.root.iterdir()) == before  # nothing written, the holder's files kept


def test_the_line_says_so_when_the_holder_file_is_missing(cli, held):
    (held.root / HOLDER_NAME).unlink()
    result = cli("train", TINY, "--out", held.root, "--steps", "2", *FAST)
    assert_clean_failure(result, mentions=("holder unknown", HOLDER_NAME, f"lock {held.root / LOCK_NAME}"))


def test_the_lock_is_gone_after_a_normal_end(cli, tmp_path, seen_while_training):
    run = tmp_path / "run"
    result = cli("train", TINY, "--out", run, "--steps", "2", *FAST)
    assert result.exit_code == 0, result.stderr
    assert seen_while_training == [[LOCK_NAME, HOLDER_NAME]]  # held while it trained
    assert lock_files(run) == [] and checkpoints(run)
    result = cli("train", TINY, "--out", run, "--steps", "3", *FAST, "--resume")  # a next process may train here
    assert result.exit_code == 0, result.stderr
    assert lock_files(run) == []


def test_the_lock_is_gone_after_a_training_error(cli, tmp_path, seen_while_training):
    run = tmp_path / "run"
    result = cli("train", TINY, "--out", run, "--steps", "2", *FAST, "--set", "train.max_abs_loss=1e-9")
    assert result.exit_code == 2 and "train.max_abs_loss" in result.stderr, result.stderr
    assert seen_while_training == [[LOCK_NAME, HOLDER_NAME]] and lock_files(run) == []
    RunLock(root=run).acquire()  # free (released by this process's exit, too)


def test_the_lock_is_gone_after_an_error_the_run_meets_once_the_folder_is_made(tmp_path, seen_while_training):
    """A bad blueprint setting refused after the folder exists and the lock is taken (``Trainer.open``)."""
    from ganforge.engine.build import build_trainer
    from ganforge.engine.distributed import place_process
    from ganforge.errors import GanforgeError

    run = tmp_path / "run"
    trainer = build_trainer(TINY, overrides=["train.eval_every=1", "data.size=64", "train.batch_size=8"],
                            placement=place_process("cpu"), out=run, steps=1, seed=0)
    with pytest.raises(GanforgeError, match="train.eval_every"):
        trainer.run()
    assert seen_while_training == [[LOCK_NAME, HOLDER_NAME]]
    assert run.is_dir() and lock_files(run) == []
    lock = RunLock(root=run)
    lock.acquire()
    lock.release()


def test_a_sigkilled_holder_leaves_no_lock_and_resume_goes_on(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "ganforge", "train", str(TINY), "--out", str(run), "--steps", "400", *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not checkpoints(run) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpoints(run) and process.poll() is None, "no checkpoint while training"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (run / HOLDER_NAME).is_file()  # a killed process cleans nothing up: only the kernel's lock goes
    resumed = subprocess.run([*command[:command.index("--steps")], "--steps", "3", *FAST, "--resume"], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "another ganforge process" not in resumed.stderr and lock_files(run) == []


# -- torchrun: rank 0 alone takes the lock ----------------------------------------------------------------------

def test_under_torchrun_rank_0_alone_locks_and_a_refusal_stops_every_rank(tmp_path):
    from test_ddp_faults import FAST as DDP_FAST, LIMIT_S, lines, two_ranks, without_progress

    run = tmp_path / "run"
    lock = RunLock(root=run)
    lock.acquire()
    try:
        (rank0, rank1), seconds = two_ranks("train", TINY, "--out", run, "--steps", "2", *DDP_FAST)
        line = assert_clean_failure(without_progress(rank0), mentions=refusal_words(lock), seconds=LIMIT_S,
                                    elapsed=seconds)
        assert rank1.returncode == 2 and lines(rank1) == [line]  # rank 0's refusal, not one of its own
    finally:
        lock.release()
    # Both ranks train in the folder rank 0 holds: rank 1 never tries the lock (it would be refused).
    (rank0, rank1), _ = two_ranks("train", TINY, "--out", run, "--steps", "2", *DDP_FAST)
    assert rank0.returncode == 0 and rank1.returncode == 0, (rank0.stderr, rank1.stderr)
    assert lock_files(run) == [] and checkpoints(run)
