"""`ganforge sample`, `ganforge evaluate` and evaluation during training, end to end.

A small TorchScript stand-in for the Inception network keeps these fast; the real network is
exercised in tests/metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from support import TINY

FAST = ["--device", "cpu", "--set", "train.batch_size=8", "--set", "data.size=64", "--set", "train.log_every=1",
        "--set", "train.sample_every=1000"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from click.testing import CliRunner

    from ganforge.cli import cli

    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = CliRunner().invoke(cli, ["train", str(TINY), "--out", str(out), "--steps", "2", *FAST,
                                      "--set", "update_rule.2={type: ema, decay: 0.9, start: 0}"])
    assert result.exit_code == 0, result.stderr
    return out


def test_sample_grid_is_reproducible_and_uses_ema(cli, run, tmp_path):
    first = cli("sample", run, "--n", "8", "--seed", "3", "--out", tmp_path / "a.png", "--device", "cpu")
    second = cli("sample", run / "checkpoints" / f"step-{2:09d}.pt", "--n", "8", "--seed", "3",
                 "--out", tmp_path / "b.png", "--device", "cpu", "--individual", tmp_path / "each")
    assert first.exit_code == 0 and second.exit_code == 0, second.stderr
    assert "EMA generator" in first.stdout and "eval mode" in first.stdout
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert len(list((tmp_path / "each").glob("*.png"))) == 8
    raw = cli("sample", run, "--n", "8", "--seed", "3", "--out", tmp_path / "c.png", "--device", "cpu", "--raw")
    assert "raw generator" in raw.stdout
    assert (tmp_path / "c.png").read_bytes() != (tmp_path / "a.png").read_bytes()


def test_sample_needs_no_training_data(cli, tmp_path):
    import shutil

    from PIL import Image

    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(root / cls / f"{i}.png")
    out = tmp_path / "run"
    trained = cli("train", TINY, "--out", out, "--steps", "1", *FAST, "--set",
                  "data={type: imagefolder, root: %s, resolution: 16, num_classes: 2}" % root)
    assert trained.exit_code == 0, trained.stderr
    shutil.rmtree(root)
    result = cli("sample", out, "--n", "4", "--out", tmp_path / "g.png", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "g.png").exists()


def test_sample_rejects_a_class_the_model_does_not_have(cli, run):
    result = cli("sample", run, "--class", "99", "--device", "cpu")
    assert result.exit_code == 2 and "the model has 4 classes" in result.stderr


def test_sample_of_missing_run_is_a_clear_error(cli, tmp_path):
    result = cli("sample", tmp_path / "nothing", "--device", "cpu")
    assert result.exit_code == 2 and "no such run folder or checkpoint file" in result.stderr


def test_evaluate_prints_protocol_and_appends_to_the_log(cli, run, stand_in):
    result = cli("evaluate", run, "--n", "16", "--metrics", "fid,kid,pr", "--inception", stand_in,
                 "--device", "cpu", "--batch-size", "8")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for phrase in ("fid: ", "kid: ", "precision: ", "recall: ", "EMA generator in eval mode",
                   "training data (procedural", "no flip", "299"):
        assert phrase in out, phrase
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluation = [r for r in records if r.get("event") == "evaluation"][-1]
    assert evaluation["step"] == 2 and evaluation["fid"] > 0 and "protocol" in evaluation


def test_evaluate_protocol_is_chosen_printed_and_logged(cli, run, stand_in):
    def evaluate(*extra: str) -> tuple[str, dict]:
        result = cli("evaluate", run, "--n", "16", "--metrics", "fid", "--inception", stand_in, "--device", "cpu",
                     "--batch-size", "8", *extra)
        assert result.exit_code == 0, result.stderr
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return result.stdout, [r for r in records if r.get("event") == "evaluation"][-1]

    fids = {}
    for name in ("standard", "clean", "legacy"):
        out, record = evaluate(*(["--protocol", name] if name != "standard" else []))
        assert f"preprocessing: {name}\n" in out and f"protocol {name}:" in out
        assert record["protocol"]["preprocessing"] == name
        fids[name] = record["fid"]
    assert len(set(fids.values())) == 3  # each protocol gives its own number (and its own reference cache)
    _, again = evaluate()
    assert again["fid"] == fids["standard"]
    bad = cli("evaluate", run, "--n", "16", "--metrics", "fid", "--protocol", "tf2", "--device", "cpu")
    assert bad.exit_code == 2 and "--protocol" in bad.stderr and "Traceback" not in bad.stderr


def test_evaluate_against_a_folder_and_a_stats_file(cli, run, stand_in, tmp_path):
    from PIL import Image

    folder = tmp_path / "ref"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    result = cli("evaluate", run, "--n", "12", "--metrics", "fid", "--inception", stand_in, "--device", "cpu",
                 "--reference", folder)
    assert result.exit_code == 0, result.stderr
    assert f"folder {folder}" in result.stdout
    np.savez(tmp_path / "stats.npz", mu=np.zeros(32), sigma=np.eye(32))
    result = cli("evaluate", run, "--n", "12", "--metrics", "fid", "--inception", stand_in, "--device", "cpu",
                 "--reference", tmp_path / "stats.npz")
    assert result.exit_code == 0, result.stderr
    assert "mean and covariance only" in result.stdout
    result = cli("evaluate", run, "--n", "12", "--metrics", "kid", "--inception", stand_in, "--device", "cpu",
                 "--reference", tmp_path / "stats.npz")
    assert result.exit_code == 2 and "needs reference features" in result.stderr


def test_evaluate_unknown_metric_suggests(cli, run):
    result = cli("evaluate", run, "--metrics", "fdi", "--device", "cpu")
    assert result.exit_code == 2 and "did you mean 'fid'" in result.stderr


def test_training_evaluates_and_keeps_the_best_fid_checkpoint(cli, stand_in, tmp_path):
    out = tmp_path / "run"
    result = cli("train", TINY, "--out", out, "--steps", "4", *FAST, "--set", "train.eval_every=2",
                 "--set", "train.eval_images=8", "--set", f"train.eval_inception={stand_in}",
                 "--set", "train.eval_metrics=[fid, kid]")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in records if r.get("event") == "evaluation"]
    assert [r["step"] for r in evaluations] == [2, 4]
    assert {r["protocol"]["preprocessing"] for r in evaluations} == {"standard"}
    best = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert best["fid"] == min(r["fid"] for r in evaluations)
    assert best["step"] == min(evaluations, key=lambda r: r["fid"])["step"]


def test_training_evaluates_with_the_blueprints_protocol(cli, stand_in, tmp_path):
    out = tmp_path / "run"
    result = cli("train", TINY, "--out", out, "--steps", "2", *FAST, "--set", "train.eval_every=2",
                 "--set", "train.eval_images=8", "--set", f"train.eval_inception={stand_in}",
                 "--set", "train.eval_protocol=clean")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["protocol"]["preprocessing"] for r in records if r.get("event") == "evaluation"] == ["clean"]
    evaluated = cli("evaluate", out, "--n", "8", "--metrics", "fid", "--inception", stand_in, "--device", "cpu")
    assert evaluated.exit_code == 0 and "preprocessing: clean\n" in evaluated.stdout  # the run's own protocol
