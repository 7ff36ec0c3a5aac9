"""Issue 22: the divergence guard (train.max_abs_loss), stop signals, a SIGKILLed study, two trainers on one folder
(the second refused by the run-folder lock, issue 23).

The signal rows run ``python -m ganforge train`` as a subprocess and signal it at moments drawn from
a seeded RNG once training has started (or while a checkpoint is being written); the interrupted run
is then resumed and its final generator + discriminator weights hashed against an uninterrupted run
of the same total steps. The suite runs one try per row; the full matrix (10 tries per signal):

    OMP_NUM_THREADS=1 python tests/test_divergence_and_signals.py --tries 10
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `support`, also when run as a script

from support import ROOT, TINY, assert_clean_failure  # noqa: E402

FAST = ["--set", "train.batch_size=8", "--set", "data.size=64", "--set", "train.log_every=2",
        "--set", "train.sample_every=1000", "--set", "train.checkpoint_every=2", "--set", "train.keep_checkpoints=10"]
HUGE_LR = "update_rule.0={type: ttur, g_lr: 1.0e6, d_lr: 1.0e6, betas: [0.0, 0.9]}"


def training_failure(result):  # type: ignore[no-untyped-def]
    """``result`` with the progress lines a training run prints before it fails taken out of stderr.

    Those lines are the run's normal output; the failure itself must still be one line.
    """

    @dataclass
    class Failure:
        exit_code: int
        stderr: str

    kept = [line for line in result.stderr.splitlines() if not (line.startswith("[") and "] step " in line)]
    return Failure(exit_code=result.exit_code, stderr="\n".join(kept))


def checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("step-*.pt"))


# -- 1. divergence guard ----------------------------------------------------------------------------------------

def test_huge_learning_rate_trains_on_without_the_guard_and_stops_with_it(cli, tmp_path):
    free = tmp_path / "free"
    result = cli("train", TINY, "--out", free, "--device", "cpu", *FAST, "--steps", "2", "--set", HUGE_LR)
    assert result.exit_code == 0, result.stderr  # finite, however large: the default lets it run
    metrics = [json.loads(line) for line in (free / "metrics.jsonl").read_text().splitlines()]
    assert max(abs(m["g_loss"]) for m in metrics if "g_loss" in m) > 1e6

    guarded = tmp_path / "guarded"
    result = cli("train", TINY, "--out", guarded, "--device", "cpu", *FAST, "--steps", "4", "--set", HUGE_LR,
                 "--set", "train.max_abs_loss=1e6")
    line = assert_clean_failure(training_failure(result), mentions=("train.max_abs_loss", "at step 1",
                                                                    "above the limit (1e+06)"))
    assert "no checkpoint was written" in line and checkpoints(guarded) == []


def _blow_up_at_call(monkeypatch, call: int, factor: float) -> None:
    """The generator's hinge loss times ``factor`` at its ``call``-th evaluation (step ``call``)."""
    from ganforge.components.losses.adversarial import Hinge

    original = Hinge.generator_loss
    calls = {"n": 0}

    def blown(self, *, fake):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        loss = original(self, fake=fake)
        return loss * factor if calls["n"] == call else loss

    monkeypatch.setattr(Hinge, "generator_loss", blown)


def test_finite_blow_up_stops_at_its_step_and_keeps_the_last_good_checkpoint(cli, tmp_path, monkeypatch):
    from ganforge.engine.checkpoints import load_checkpoint

    _blow_up_at_call(monkeypatch, 3, 1e17)
    run = tmp_path / "run"
    result = cli("train", TINY, "--out", run, "--device", "cpu", *FAST, "--steps", "6",
                 "--set", "train.max_abs_loss=1e6")
    line = assert_clean_failure(training_failure(result), mentions=("train.max_abs_loss", "at step 3",
                                                                    "step-000000002.pt", "is kept"))
    assert str(TINY) in line  # the blueprint file, then the key
    assert checkpoints(run) == [f"step-{2:09d}.pt"]
    state = load_checkpoint(run / "checkpoints" / f"step-{2:09d}.pt")  # checksum verified
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())
    sampled = cli("sample", run, "--n", "4", "--out", tmp_path / "g.png", "--device", "cpu")
    assert sampled.exit_code == 0, sampled.stderr


def test_finite_blow_up_without_the_guard_trains_to_the_end(cli, tmp_path, monkeypatch):
    _blow_up_at_call(monkeypatch, 3, 1e17)
    result = cli("train", TINY, "--out", tmp_path / "run", "--device", "cpu", *FAST, "--steps", "4")
    assert result.exit_code == 0, result.stderr


def test_non_finite_loss_with_the_guard_set_is_still_named_non_finite(cli, tmp_path, monkeypatch):
    _blow_up_at_call(monkeypatch, 3, float("nan"))
    run = tmp_path / "run"
    result = cli("train", TINY, "--out", run, "--device", "cpu", *FAST, "--steps", "6",
                 "--set", "train.max_abs_loss=1e6")
    assert result.exit_code == 1, result.stderr
    assert "non-finite loss at step 3" in result.stderr and "Traceback" not in result.stderr
    assert checkpoints(run) == [f"step-{2:09d}.pt"]


def test_a_generous_guard_changes_nothing(cli, tmp_path):
    runs = {}
    for name, extra in (("plain", []), ("guarded", ["--set", "train.max_abs_loss=1e30"])):
        result = cli("train", TINY, "--out", tmp_path / name, "--device", "cpu", *FAST, "--steps", "2", *extra)
        assert result.exit_code == 0, result.stderr
        runs[name] = torch.load(tmp_path / name / "checkpoints" / f"step-{2:09d}.pt", weights_only=True)
    for net in ("generator", "discriminator"):
        assert all(torch.equal(runs["plain"][net][k], runs["guarded"][net][k]) for k in runs["plain"][net])


def test_the_guard_reads_nothing_from_the_device_per_step(monkeypatch):
    """``Interval.add`` only queues device work; the step is read where the loop already syncs."""
    from ganforge.engine.loop import Interval

    interval = Interval(torch.device("cpu"), 0, max_abs_loss=10.0)
    losses = [(1.0, 2.0), (-3.0, 50.0), (float("nan"), 1.0), (1.0, 1.0)]

    def forbidden(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("Interval.add read a tensor's value (a GPU sync)")

    with monkeypatch.context() as patch:
        for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
            patch.setattr(torch.Tensor, name, forbidden)
        for step, (d, g) in enumerate(losses, start=1):
            interval.add(step, torch.tensor(d), torch.tensor(g))
    assert interval.first_bad() == 2 and interval.size_at(2) == 50.0
    assert interval.size_at(3) is None  # not this interval's first bad step (another rank's, under a vote)
    nan_first = Interval(torch.device("cpu"), 0, max_abs_loss=10.0)
    nan_first.add(1, torch.tensor(float("nan")), torch.tensor(1.0))
    assert nan_first.first_bad() == 1 and not torch.isfinite(torch.tensor(nan_first.size_at(1)))


# -- 3. stop signals ----------------------------------------------------------------------------------------------

STEPS = 24
SIGNAL_ARGS = ["--device", "cpu", "--set", "train.batch_size=8", "--set", "data.size=64", "--set", "train.log_every=1",
               "--set", "train.sample_every=1000", "--set", "train.checkpoint_every=1",
               "--set", "train.keep_checkpoints=3"]


def train_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ganforge", "train", str(TINY), "--out", str(out), "--steps", str(STEPS),
            *SIGNAL_ARGS, *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def weights_digest(run: Path, step: int = STEPS) -> str:
    """SHA-256 of the generator and discriminator weights in ``run``'s checkpoint of ``step``."""
    state = torch.load(run / "checkpoints" / f"step-{step:09d}.pt", weights_only=True)
    digest = hashlib.sha256()
    for network in ("generator", "discriminator"):
        for key in sorted(state[network]):
            digest.update(key.encode())
            digest.update(state[network][key].cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class Try:
    """One interrupted run: what it printed and left, and whether ``--resume`` ended bit-exact."""

    signal: str
    mode: str
    delay: float
    code: int
    stopped_at: int | None
    left: list[str]
    unfinished: list[str]
    unreadable: list[str]
    resumed_code: int
    exact: bool
    stderr: str


def _wait_for_training(process: subprocess.Popen, limit: float = 180) -> None:
    """Read stderr until the first progress line: the stop handlers are in place from there on."""
    end = time.monotonic() + limit
    assert process.stderr is not None
    while time.monotonic() < end:
        line = process.stderr.readline()
        if not line:
            raise AssertionError(f"training never started (exit {process.wait()})")
        if "] step " in line:
            return
    raise AssertionError("training did not start in time")


def _wait_for_a_write(folder: Path, process: subprocess.Popen, *, nth: int = 1, limit: float = 60) -> bool:
    """Spin until the ``nth`` checkpoint write is in progress (its temporary file exists); False if it never was."""
    end = time.monotonic() + limit
    seen: set[str] = set()
    while time.monotonic() < end and process.poll() is None:
        try:
            seen.update(name for name in os.listdir(folder) if name.endswith(".tmp"))
        except FileNotFoundError:
            pass
        if len(seen) >= nth:
            return True
    return False


def interrupt_and_resume(out: Path, sig: signal.Signals, mode: str, rng: random.Random, reference: str) -> Try:
    """``mode``: ``random`` (a delay after training started), ``write`` (while a checkpoint is written),
    ``second`` (a stop, then a second signal during a checkpoint write)."""
    from ganforge.engine.checkpoints import list_unfinished, load_checkpoint

    process = subprocess.Popen(train_command(out), env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_training(process)
        delay = rng.uniform(0.0, 1.0) if mode != "write" else 0.0
        time.sleep(delay)
        if mode == "write":  # the first stop signal lands inside a checkpoint write, of a random step
            _wait_for_a_write(out / "checkpoints", process, nth=rng.randint(1, STEPS // 2))
        process.send_signal(sig)
        if mode == "second" and _wait_for_a_write(out / "checkpoints", process):
            process.send_signal(sig)  # may still land just after the write: then it was one stop
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    folder = out / "checkpoints"
    left = sorted(p.name for p in folder.glob("step-*.pt"))
    unreadable = []
    for name in left:
        try:
            load_checkpoint(folder / name)
        except Exception as err:  # noqa: BLE001 - recorded, and the test fails on it
            unreadable.append(f"{name}: {err}")
    stopped = [line for line in stderr.splitlines() if line.startswith("stopped at step ")]
    resumed = subprocess.run(train_command(out, "--resume"), env=_env(), cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    exact = resumed.returncode == 0 and weights_digest(out) == reference
    return Try(signal=sig.name, mode=mode, delay=delay, code=process.returncode,
               stopped_at=int(stopped[0].split()[3].rstrip(";")) if stopped else None, left=left,
               unfinished=[p.name for p in list_unfinished(folder)], unreadable=unreadable,
               resumed_code=resumed.returncode, exact=exact, stderr=stderr)


@pytest.fixture(scope="module")
def reference_digest(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("straight") / "run"
    done = subprocess.run(train_command(out), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return weights_digest(out)


SIGNAL_ROWS = [("SIGINT", "write"), ("SIGUSR1", "random"), ("SIGTERM", "second")]  # SIGTERM at a random step: test_training


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
@pytest.mark.parametrize("name, mode", SIGNAL_ROWS, ids=[f"{n}-{m}" for n, m in SIGNAL_ROWS])
def test_a_stop_signal_saves_a_checkpoint_and_resume_is_bit_exact(tmp_path, reference_digest, name, mode):
    outcome = interrupt_and_resume(tmp_path / "run", signal.Signals[name],
                                   mode, random.Random(f"{name}-{mode}"), reference_digest)
    assert outcome.unreadable == [] and outcome.unfinished == [], outcome
    assert outcome.exact, outcome
    assert "Traceback" not in outcome.stderr, outcome.stderr
    if outcome.code == 1 and mode == "second":  # stops now: click's one line; the write in progress is dropped whole
        assert outcome.stderr.strip().endswith("Aborted!"), outcome
        return
    assert outcome.code == 0, outcome
    assert f"{name}: finishing step" in outcome.stderr
    assert outcome.stopped_at is not None and outcome.left[-1] == f"step-{outcome.stopped_at:09d}.pt", outcome


def test_sigusr1_is_a_stop_signal():
    from ganforge.engine.signals import StopRequest, stop_signals

    assert signal.SIGUSR1 in stop_signals()
    said: list[str] = []
    with StopRequest(describe=lambda: "finishing step 1, then checkpointing", report=said.append) as stop:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.01)  # the handler runs between bytecodes
        assert stop.requested and said == ["\nSIGUSR1: finishing step 1, then checkpointing"]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_a_notice_that_collides_with_a_write_keeps_the_stop():
    from ganforge.engine.signals import StopRequest

    def reentrant(message: str) -> None:
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")

    with StopRequest(describe=lambda: "", report=reentrant) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.requested


# -- 5. a SIGKILLed study, rerun --------------------------------------------------------------------------------

def study_command(out: Path, inception: Path) -> list[str]:
    return [sys.executable, "-m", "ganforge", "study", str(TINY), "--variant", "", "--variant",
            "no-attention: generator.attention=[]; discriminator.attention=[]", "--seeds", "1", "--steps", "4",
            "--device", "cpu", "--set", "train.batch_size=8", "--set", "data.size=64",
            "--set", "train.checkpoint_every=1", "--set", "train.sample_every=1000", "--set", "train.log_every=1",
            "--metrics", "fid", "--eval-images", "8", "--inception", str(inception), "--out", str(out)]


@pytest.fixture(scope="module")
def pooled_colours(tmp_path_factory) -> Path:
    from support import save_torchscript

    path = tmp_path_factory.mktemp("inception") / "pool.pt"
    save_torchscript(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten()), path)
    return path


def kill_study_then_rerun(out: Path, inception: Path, rng: random.Random, kills: int = 3,
                          ) -> tuple[list[str], Any]:
    """SIGKILL the study ``kills`` times, each a random 0-6 s after it first printed (past the start-up, which
    a loaded machine stretches), then run it to the end; returns the last line each killed study printed."""
    last_lines = []
    for index in range(kills):
        printed = out.parent / f"kill-{index}.stderr"
        with open(printed, "w", encoding="utf-8") as stderr:
            process = subprocess.Popen(study_command(out, inception), env=_env(), cwd=ROOT,
                                       stdout=subprocess.DEVNULL, stderr=stderr)
            end = time.monotonic() + 180
            while printed.stat().st_size == 0 and process.poll() is None and time.monotonic() < end:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 6.0))
            process.kill()
            process.wait()
        lines = [line for line in printed.read_text(encoding="utf-8").splitlines() if line.strip()]
        last_lines.append(lines[-1] if lines else "")
    return last_lines, subprocess.run(study_command(out, inception), env=_env(), cwd=ROOT, capture_output=True,
                                      text=True, timeout=600)


def test_a_study_killed_three_times_then_rerun_has_a_complete_table(tmp_path, pooled_colours):
    out = tmp_path / "study"
    killed_after, rerun = kill_study_then_rerun(out, pooled_colours, random.Random(22))
    assert rerun.returncode == 0, (killed_after, rerun.stderr)
    with open(out / "study.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["variant"] for r in rows) == ["blueprint", "no-attention"], rows
    assert all(r["step"] == "4" and float(r["fid"]) >= 0 and r["failed"] == "" for r in rows), rows
    markdown = (out / "study.md").read_text(encoding="utf-8").splitlines()
    assert sum(line.startswith("| blueprint |") for line in markdown) == 1
    assert sum(line.startswith("| no-attention |") for line in markdown) == 1
    for variant in ("blueprint", "no-attention"):
        log = (out / variant / "seed-0" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in log]  # every line whole
        assert sum(r.get("event") == "evaluation" for r in records) == 1, (killed_after, records)
    assert not [p for p in out.rglob("*.tmp")], killed_after


def test_a_kill_between_the_log_entry_and_done_json_logs_the_evaluation_once(tmp_path, pooled_colours, monkeypatch):
    from click.testing import CliRunner

    from ganforge.cli import cli
    from ganforge.commands.study import runner

    args = study_command(tmp_path / "study", pooled_colours)[3:]
    original = runner.write_json

    def killed(path: Path, value: object) -> None:
        if path.name == runner.DONE_FILE:
            raise KeyboardInterrupt  # as if killed right after the evaluation was logged
        original(path, value)

    monkeypatch.setattr(runner, "write_json", killed)
    killed_run = CliRunner().invoke(cli, args, catch_exceptions=False)  # click: "Aborted!", exit 1
    assert killed_run.exit_code == 1 and not list((tmp_path / "study").rglob(runner.DONE_FILE))
    first = (tmp_path / "study" / "blueprint" / "seed-0" / "metrics.jsonl").read_text(encoding="utf-8")
    assert first.count('"event": "evaluation"') == 1  # logged, then "killed" before done.json
    monkeypatch.setattr(runner, "write_json", original)
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    for variant in ("blueprint", "no-attention"):
        log = (tmp_path / "study" / variant / "seed-0" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        assert sum(json.loads(line).get("event") == "evaluation" for line in log) == 1


def test_a_table_write_cut_short_leaves_the_previous_table(tmp_path, monkeypatch):
    from ganforge.commands.study import table
    from ganforge.commands.study.runner import RunResult
    from ganforge.commands.study.variants import StudyVariant

    variant = StudyVariant(name="blueprint", slug="blueprint", overrides=[])
    results = [RunResult(variant=variant, seed=0, folder=tmp_path / "r", step=4, values={"fid": 1.5})]
    paths = table.write_tables(results, [variant], tmp_path)
    before = {name: path.read_bytes() for name, path in paths.items()}

    def cut(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # killed after the new text was written, before it replaced the table

    monkeypatch.setattr(os, "replace", cut)
    changed = [RunResult(variant=variant, seed=0, folder=tmp_path / "r", step=8, values={"fid": 0.5})]
    with pytest.raises(KeyboardInterrupt):
        table.write_tables(changed, [variant], tmp_path)
    assert {name: path.read_bytes() for name, path in paths.items()} == before
    assert not list(tmp_path.glob("*.tmp"))


# -- 6. two trainers on one run folder: the second is refused (the run-folder lock, issue 23) -------------------

def test_a_second_trainer_on_one_folder_exits_2_naming_the_holder_and_the_first_finishes(tmp_path):
    """Before the lock (issue 22, 10 tries) two trainers started together both trained into one folder
    (``metrics.jsonl`` interleaved, checkpoints from either run) or lost races on temporary names.

    Now the second, started while the first holds the folder (stopped with SIGSTOP just after taking the
    lock, so the overlap is certain), exits 2 with one line naming the holder's pid, host and lock file,
    and writes nothing; the first, continued, trains to the end alone.
    """
    import socket

    from ganforge.engine.checkpoints import load_checkpoint
    from ganforge.engine.run_lock import HOLDER_NAME, LOCK_NAME

    out = tmp_path / "run"
    # checkpoints at the end only: the second's own check ("already holds checkpoints") cannot answer first
    command = lambda seed: train_command(out, "--seed", str(seed), "--steps", "20",  # noqa: E731
                                         "--set", "train.checkpoint_every=1000")
    first = subprocess.Popen(command(1), env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / HOLDER_NAME).is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGSTOP)
        assert (out / HOLDER_NAME).is_file(), "the first trainer never took the lock"
        second = subprocess.run(command(2), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
        os.kill(first.pid, signal.SIGCONT)
        line = assert_clean_failure(second, mentions=(
            f"{out}: another ganforge process is training in this folder", f"pid {first.pid} on {socket.gethostname()}",
            f"lock {out / LOCK_NAME}", "wait for it or use another --out"))
        assert line.startswith("error: ")
        code, stderr = first.wait(timeout=300), first.stderr.read()  # type: ignore[union-attr]
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
            first.kill()
            first.wait()
        first.stderr.close()  # type: ignore[union-attr]
    assert code == 0 and "Traceback" not in stderr, stderr
    for name in checkpoints(out):
        load_checkpoint(out / "checkpoints" / name)  # whole, checksum verified
    assert checkpoints(out) == ["step-000000020.pt"]
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert steps == list(range(1, 21))  # the first run's lines alone, once each
    assert sorted(p.name for p in out.glob(".ganforge.lock*")) == []


# -- the full signal matrix, as a script ------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    rng = random.Random(options.seed)
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        done = subprocess.run(train_command(base / "straight"), env=_env(), cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        reference = weights_digest(base / "straight")
        failures = 0
        for name in ("SIGTERM", "SIGINT", "SIGUSR1"):
            for index in range(options.tries):
                mode = ("random", "random", "write", "second")[index % 4] if name != "SIGUSR1" else \
                    ("random", "write")[index % 2]
                started = time.perf_counter()
                outcome = interrupt_and_resume(base / f"{name}-{index}", getattr(signal, name), mode, rng, reference)
                good = outcome.exact and not outcome.unreadable and not outcome.unfinished
                failures += not good
                print(f"{name:7} {mode:6} delay {outcome.delay:4.2f}s exit {outcome.code:3} stopped at "
                      f"{outcome.stopped_at!s:>4} left {','.join(n[5:-3].lstrip('0') for n in outcome.left):12} "
                      f"resume exit {outcome.resumed_code} {'bit-exact' if outcome.exact else 'DIFFERENT'} "
                      f"{'' if good else 'FAIL'} ({time.perf_counter() - started:.1f} s)", flush=True)
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
