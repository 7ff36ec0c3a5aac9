"""`ganforge study --parallel N` (issue 23 §4): N runs at once, each its own process, one thread and one
GPU slot apiece; the same tables as the sequential study; a crash ends one run only; a stop resumes.

FID on a 2×2-pooled-colours stand-in for Inception keeps evaluation cheap; it is a built-in metric, so
the worker processes (which do not import this file) compute it too.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganforge.commands.study.parallel import assign_devices, threads_per_run, visible_devices
from support import ROOT, TINY, assert_clean_failure, save_torchscript

FAST = ["--steps", "2", "--device", "cpu", "--set", "train.batch_size=8", "--set", "data.size=64",
        "--set", "train.checkpoint_every=1", "--set", "train.sample_every=1000", "--set", "train.log_every=1"]
VARIANTS = ["--variant", "", "--variant", "no-attention: generator.attention=[]; discriminator.attention=[]"]
STOP_STEPS = 30  # long enough to stop part-way, short enough to finish on the rerun
FOLDERS = ["blueprint/seed-0", "blueprint/seed-1", "no-attention/seed-0", "no-attention/seed-1"]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inception") / "pool.pt"
    save_torchscript(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten()), path)
    return path


def study_args(out: Path, stand_in: Path, *extra: str, variants: list[str] = VARIANTS, seeds: int = 2) -> list[str]:
    return ["study", str(TINY), *variants, "--seeds", str(seeds), *FAST, "--metrics", "fid", "--eval-images", "8",
            "--inception", str(stand_in), "--out", str(out), *extra]


def invoke(args: list[str]):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from ganforge.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False)


def table_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "study.csv", newline="", encoding="utf-8") as handle:
        return [{k: v for k, v in row.items() if k != "folder"} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def both(tmp_path_factory, stand_in):  # type: ignore[no-untyped-def]
    """The same study run one at a time and two at a time (GPU slots '5,7'), one torch thread per run in both."""
    root = tmp_path_factory.mktemp("parallel")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sequential = invoke(study_args(root / "one", stand_in, "--threads-per-run", "1"))
    finally:
        torch.set_num_threads(threads)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # no such GPUs: --device cpu runs ignore them, but they see them
        parallel = invoke(study_args(root / "two", stand_in, "--parallel", "2", "--threads-per-run", "1"))
    assert sequential.exit_code == 0, sequential.stderr
    assert parallel.exit_code == 0, parallel.stderr
    return root, sequential, parallel


def test_parallel_gives_the_same_tables_as_one_at_a_time(both):
    root, sequential, parallel = both
    rows = table_rows(root / "one")
    assert [r["variant"] for r in rows] == ["blueprint", "blueprint", "no-attention", "no-attention"]
    assert all(r["step"] == "2" and r["failed"] == "" and float(r["fid"]) >= 0 for r in rows), rows
    assert table_rows(root / "two") == rows
    assert (root / "two" / "study.md").read_text() == (root / "one" / "study.md").read_text()
    assert parallel.stdout == sequential.stdout  # the markdown table, printed
    for name in ("study-summary.csv",):
        assert (root / "two" / name).read_text() == (root / "one" / name).read_text()
    for folder in FOLDERS:
        done = json.loads((root / "two" / folder / "done.json").read_text())
        assert done["values"] == json.loads((root / "one" / folder / "done.json").read_text())["values"]


def test_each_worker_saw_its_thread_count_and_gpu_slot(both):
    root, _, parallel = both
    seen = {}
    for folder in FOLDERS:
        first = (root / "two" / folder / "study-worker.log").read_text().splitlines()[0]
        assert first.startswith("study worker: process ")
        assert "torch threads 1, OMP_NUM_THREADS=1," in first, first
        seen[folder] = first.rsplit("CUDA_VISIBLE_DEVICES=", 1)[1]
    assert seen["blueprint/seed-0"] == "5" and seen["blueprint/seed-1"] == "7"  # the first two slots
    assert set(seen.values()) == {"5", "7"}


def test_one_line_as_each_run_starts_and_ends_and_no_progress_bars(both):
    root, _, parallel = both
    lines = parallel.stderr.splitlines()
    runs = [line for line in lines if line.startswith("[")]
    assert len(runs) == 8, lines
    for number, folder in enumerate(FOLDERS, start=1):
        mine = [line for line in runs if line.startswith(f"[{number}/4] {root / 'two' / folder}: ")]
        assert len(mine) == 2, runs
        assert "training" in mine[0] and "1 thread" in mine[0] and "study-worker.log" in mine[0]
        assert mine[1].endswith("finished at step 2")
    assert not [line for line in lines if "\r" in line or "it/s" in line]
    assert all(line.startswith(("[", "wrote ")) for line in lines), lines


def test_a_rerun_of_a_finished_parallel_study_keeps_everything(both, stand_in):
    root, _, parallel = both
    stamps = {f: (root / "two" / f / "done.json").stat().st_mtime_ns for f in FOLDERS}
    again = invoke(study_args(root / "two", stand_in, "--parallel", "2", "--threads-per-run", "1"))
    assert again.exit_code == 0, again.stderr
    assert again.stdout == parallel.stdout
    assert sum(line.endswith("finished at step 2, kept") for line in again.stderr.splitlines()) == 4
    assert {f: (root / "two" / f / "done.json").stat().st_mtime_ns for f in FOLDERS} == stamps


def test_gpu_slots_round_robin_over_the_visible_devices():
    assert assign_devices(["0", "1"], 3) == ["0", "1", "0"]
    assert assign_devices([], 3) == [None, None, None]
    assert assign_devices(["3"], 2) == ["3", "3"]
    assert visible_devices("cuda", {"CUDA_VISIBLE_DEVICES": "0,1"}) == ["0", "1"]
    assert visible_devices("cpu", {"CUDA_VISIBLE_DEVICES": " 2, 6 "}) == ["2", "6"]  # an existing list is kept
    assert visible_devices("cuda", {"CUDA_VISIBLE_DEVICES": ""}) == []  # "no GPUs" stays no GPUs
    assert visible_devices("cpu", {}) == []


def test_threads_per_run_share_the_cpus():
    assert threads_per_run(2, None, cpus=16) == 8
    assert threads_per_run(3, None, cpus=16) == 5
    assert threads_per_run(4, None, cpus=2) == 1
    assert threads_per_run(4, 3, cpus=2) == 3
    assert threads_per_run(1, None) >= 1


def crash_on_gpu_slot(tmp_path: Path, slot: str) -> Path:
    """A ``sitecustomize`` that ends the worker whose CUDA_VISIBLE_DEVICES is ``slot``, as a segfault would."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if 'ganforge.commands.study.worker' in ' '.join(sys.orig_argv)"
        f" and os.environ.get('CUDA_VISIBLE_DEVICES') == {slot!r}:\n"
        "    print('simulated crash', file=sys.stderr, flush=True)\n"
        "    os._exit(9)\n")
    return hook


def test_a_crashed_run_is_recorded_failed_and_the_others_finish(stand_in, tmp_path, monkeypatch):
    out = tmp_path / "study"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(crash_on_gpu_slot(tmp_path, "7")), str(ROOT / "tests")]))
    args = study_args(out, stand_in, "--parallel", "2", "--threads-per-run", "1", variants=["--variant", ""])
    result = invoke(args)
    assert result.exit_code == 0, result.stderr
    crashed = json.loads((out / "blueprint" / "seed-1" / "done.json").read_text())
    assert crashed["failed"].startswith("its process ended with exit code 9 (simulated crash)"), crashed
    assert crashed["values"] == {}
    assert json.loads((out / "blueprint" / "seed-0" / "done.json").read_text())["step"] == 2
    rows = table_rows(out)
    assert [(r["seed"], r["step"], bool(r["failed"])) for r in rows] == [("0", "2", False), ("1", "0", True)]
    assert "- blueprint, seed 1: its process ended with exit code 9" in (out / "study.md").read_text()
    assert f"[2/2] {out / 'blueprint' / 'seed-1'}: failed: its process ended with exit code 9" in result.stderr
    again = invoke(args)  # as a diverged run: the failure is a result, kept
    assert again.exit_code == 0 and "failed earlier (its process ended with exit code 9" in again.stderr


def test_a_refused_run_is_shown_failed_not_recorded_and_the_study_ends_with_exit_2(stand_in, tmp_path):
    out = tmp_path / "study"
    missing = tmp_path / "no-such-data"
    variants = ["--variant", "", "--variant",  # assembles, then the worker finds no data
                f"elsewhere: data={{type: imagefolder, root: {missing}, resolution: 16, channels: 3}}"]
    result = invoke(study_args(out, stand_in, "--parallel", "2", "--threads-per-run", "1", variants=variants,
                               seeds=1))
    assert result.exit_code == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 run(s) refused") and str(missing) in last and "elsewhere" in last
    assert "Traceback" not in result.stderr
    assert not (out / "elsewhere" / "seed-0" / "done.json").exists()  # a rerun tries it again
    assert json.loads((out / "blueprint" / "seed-0" / "done.json").read_text())["step"] == 2
    assert [bool(r["failed"]) for r in table_rows(out)] == [False, True]


def test_sigterm_stops_the_workers_at_a_checkpoint_and_the_rerun_resumes(stand_in, tmp_path):
    out = tmp_path / "study"
    args = [sys.executable, "-m", "ganforge", *study_args(out, stand_in, "--parallel", "2", "--threads-per-run", "1",
                                                          variants=["--variant", ""])]
    args[args.index("2", args.index("--steps"))] = str(STOP_STEPS)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    printed = tmp_path / "stderr.txt"
    with open(printed, "w", encoding="utf-8") as stderr:
        study = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        end = time.monotonic() + 240
        while time.monotonic() < end and study.poll() is None and not all(
                list((out / "blueprint" / f"seed-{s}" / "checkpoints").glob("step-*.pt")) for s in (0, 1)):
            time.sleep(0.1)
        study.send_signal(signal.SIGTERM)
        assert study.wait(timeout=120) == 0, printed.read_text()
    text = printed.read_text()
    assert text.count("stopped at its last checkpoint; rerun the same command to continue") == 2, text
    assert "rerun the same command to continue" in text.splitlines()[-1]
    for seed in (0, 1):
        run = out / "blueprint" / f"seed-{seed}"
        assert not (run / "done.json").exists()
        assert "SIGTERM: finishing step" in (run / "study-worker.log").read_text()
    rerun = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    for seed in (0, 1):
        run = out / "blueprint" / f"seed-{seed}"
        assert json.loads((run / "done.json").read_text())["step"] == STOP_STEPS
        log = (run / "study-worker.log").read_text()
        assert "resumed from" in log, log


@pytest.mark.parametrize("extra, mentions", [
    (["--parallel", "0"], ("--parallel", "0")),
    (["--parallel", "-2"], ("--parallel", "-2")),
    (["--parallel", "2", "--threads-per-run", "0"], ("--threads-per-run", "0")),
    (["--threads-per-run", "-1"], ("--threads-per-run", "-1")),
])
def test_a_bad_count_is_one_line_and_nothing_is_made(stand_in, tmp_path, extra, mentions):
    out = tmp_path / "study"
    assert_clean_failure(invoke(study_args(out, stand_in, *extra)), mentions=mentions)
    assert not out.exists()


def test_parallel_under_torchrun_is_refused_in_one_line(stand_in, tmp_path, monkeypatch):
    for key, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(key, value)
    out = tmp_path / "study"
    assert_clean_failure(invoke(study_args(out, stand_in, "--parallel", "2")), mentions=("--parallel 2", "torchrun"))
    assert not out.exists()


def test_a_study_killed_outright_leaves_no_worker_training(stand_in, tmp_path):
    out = tmp_path / "study"
    args = [sys.executable, "-m", "ganforge", *study_args(out, stand_in, "--parallel", "2", "--threads-per-run", "1",
                                                          variants=["--variant", ""])]
    args[args.index("2", args.index("--steps"))] = "100000"  # far more than 60 s of training
    printed = tmp_path / "stderr.txt"
    with open(printed, "w", encoding="utf-8") as stderr:
        study = subprocess.Popen(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=stderr)
        end = time.monotonic() + 240
        while time.monotonic() < end and printed.read_text().count("(process ") < 2:
            time.sleep(0.1)
        study.kill()
        study.wait()
    pids = [int(line.split("(process ", 1)[1].split(",", 1)[0]) for line in printed.read_text().splitlines()
            if "(process " in line]
    assert len(pids) == 2
    end = time.monotonic() + 60
    while time.monotonic() < end and any(_alive(pid) for pid in pids):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids)  # each saw its study gone, checkpointed (or not yet begun) and ended


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not yet reaped by init) has ended too
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True
