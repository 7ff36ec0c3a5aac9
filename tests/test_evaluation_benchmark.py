"""`ganforge benchmark --evaluation`: the phases of a real evaluation, timed where they run.

A stand-in for the Inception network keeps it fast (the real one is exercised in tests/metrics).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from support import TINY

FAST = ["--device", "cpu", "--set", "train.batch_size=8", "--set", "data.size=64", "--set", "train.log_every=1",
        "--set", "train.sample_every=1000"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread) -> Path:
    from click.testing import CliRunner

    from ganforge.cli import cli

    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = CliRunner().invoke(cli, ["train", str(TINY), "--out", str(out), "--steps", "1", *FAST])
    assert result.exit_code == 0, result.stderr
    return out


def test_benchmark_prints_the_phases_and_old_beside_new_maths(cli, run, stand_in, tmp_path):
    log_before = (run / "metrics.jsonl").read_text()
    result = cli("benchmark", "--evaluation", run, "--n", "24", "--repeats", "2", "--inception", stand_in,
                 "--device", "cpu", "--json", tmp_path / "bench.json")
    assert result.exit_code == 0, result.stderr
    for row in ("generation", "resize + Inception of the generated images", "reference features",
                "metric maths: fid", "metric maths: kid", "metric maths: pr", "before, ganforge ec30a16"):
        assert row in result.stdout
    assert "values equal" in result.stdout  # old and new precision/recall agree on these features
    report = json.loads((tmp_path / "bench.json").read_text())
    assert {"generation", "extraction: generated", "reference", "metric: fid", "metric: kid",
            "metric: pr"} <= set(report["once_s"])
    assert all(len(report["maths_s"][name]["repeats"]) == 2 for name in report["maths_s"])
    assert report["settings"]["n"] == 24 and report["torch_threads"] >= 1
    assert (run / "metrics.jsonl").read_text() == log_before  # a benchmark leaves the run's log alone
    assert report["protocol"]["preprocessing"] == "standard"


def test_benchmark_times_the_protocol_asked_for(cli, run, stand_in, tmp_path):
    """--protocol legacy times the pre-issue-21 preprocessing: the before of resize + Inception."""
    result = cli("benchmark", "--evaluation", run, "--metrics", "fid", "--n", "16", "--repeats", "1",
                 "--inception", stand_in, "--device", "cpu", "--protocol", "legacy", "--json", tmp_path / "b.json")
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "b.json").read_text())["protocol"]["preprocessing"] == "legacy"
    assert "preprocessing: legacy" in result.stdout


def test_timings_change_nothing_and_hold_the_features(run, stand_in):
    from ganforge.commands.evaluate import evaluate_checkpoint
    from ganforge.components.metrics.phase_timings import EvaluationTimings

    kwargs = dict(metrics=["fid", "pr"], n=16, inception=str(stand_in), device="cpu", batch_size=8,
                  progress=False, record=False)
    timings = EvaluationTimings()
    _, timed = evaluate_checkpoint(run, timings=timings, **kwargs)
    _, plain = evaluate_checkpoint(run, **kwargs)
    assert timed.values == plain.values
    assert timings.fake.shape == (16, 32) and timings.real.shape[1] == 32
    assert all(seconds >= 0 for seconds in timings.seconds.values())


def test_generation_time_is_not_charged_to_extraction():
    from ganforge.components.metrics.phase_timings import EvaluationTimings

    timings = EvaluationTimings()

    def slow_batches():
        for _ in range(3):
            time.sleep(0.05)  # the generator's forward pass
            yield torch.zeros(2, 3)

    with timings.phase("extraction", excluding="generation"):
        for _ in timings.batches(slow_batches(), "generation"):
            time.sleep(0.02)  # the extractor's work
    assert timings.seconds["generation"] >= 0.15
    assert 0.06 <= timings.seconds["extraction"] < 0.15


def test_the_old_float64_maths_agree_with_the_new_on_generic_features():
    from ganforge.commands.benchmark.evaluation import float64_precision_recall
    from ganforge.components.metrics.precision_recall import precision_recall

    rng = np.random.default_rng(0)
    real, fake = torch.from_numpy(rng.random((150, 32))), torch.from_numpy(rng.random((120, 32)) * 1.1)
    old = float64_precision_recall(real, fake, k=3, chunk_size=40)
    assert (old["precision"], old["recall"]) == precision_recall(real, fake, k=3, chunk_size=40)
    assert 0 < old["precision"] < 1


def test_help_offers_the_evaluation_benchmark(cli):
    result = cli("benchmark", "--help")
    assert "--evaluation RUN_OR_CHECKPOINT" in result.stdout and "resize + Inception" in result.stdout


def test_repeats_take_turns_so_load_falls_on_old_and_new_alike():
    from ganforge.commands.benchmark.evaluation import _interleaved

    order: list[str] = []
    times = _interleaved({"new": lambda: order.append("new"), "old": lambda: order.append("old")}, 3)
    assert order == ["new", "old"] * 3
    assert {name: len(t) for name, t in times.items()} == {"new": 3, "old": 3}
