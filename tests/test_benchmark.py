"""`ganforge benchmark`: rows side by side in one run, the baseline row, JSON, attention and loader modes."""

from __future__ import annotations

import json

import pytest
import torch

from support import BLUEPRINTS, TINY

QUICK = ["--device", "cpu", "--steps", "1", "--repeats", "2", "--warmup", "1"]


def _rows(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    return lines[lines.index(next(line for line in lines if line.startswith("variant"))) + 1:]


def test_benchmark_rows_side_by_side_with_json(cli, tmp_path):
    out = tmp_path / "bench.json"
    result = cli("benchmark", TINY, *QUICK, "--set", "train.batch_size=4", "--variant", "train.batch_size=4",
                 "--variant", "train.batch_size=8; train.tf32=true", "--json", out)
    assert result.exit_code == 0, result.stderr
    assert "2 × 1 steps" in result.stdout.splitlines()[0] and "CPU" in result.stdout.splitlines()[0]
    rows = _rows(result.stdout)
    assert [r.split()[0] for r in rows] == ["train.batch_size=4", "train.batch_size=8;"]
    report = json.loads(out.read_text())
    assert report["torch"] == torch.__version__ and report["device"] == "cpu" and report["settings"]["steps"] == 1
    first, second = report["rows"]
    assert second["overrides"] == ["train.batch_size=8", "train.tf32=true"]
    assert [first["batch_size"], second["batch_size"]] == [4, 8]
    for row in report["rows"]:
        assert len(row["images_per_s"]) == 2 and row["median_images_per_s"] > 0
        assert row["d_ms"] > 0 and row["g_ms"] > 0
        assert row["peak_memory_bytes"] is None and row["peak_fraction"] is None  # CPU: not measured
        steps_per_s = row["median_images_per_s"] / (row["batch_size"] * row["d_steps"])
        assert row["achieved_tflops"] == pytest.approx(row["flops_per_step"] * steps_per_s / 1e12)
    # FLOPs scale with the batch: the counter ran at a small batch and was scaled.
    assert second["flops_per_image"] == pytest.approx(first["flops_per_image"], rel=1e-6)


def test_counted_flops_equal_a_direct_count_at_the_full_batch(tmp_path):
    from torch.utils.flop_counter import FlopCounterMode

    from ganforge.blueprint.validation import load_blueprint
    from ganforge.commands.benchmark.training import _flops_per_step
    from ganforge.engine.distributed import place_process
    from ganforge.engine.build import build_trainer

    placement = place_process("cpu")
    scaled = _flops_per_step(load_blueprint(TINY, ["train.batch_size=8"]), [], placement, tmp_path / "a")
    trainer = build_trainer(str(TINY), overrides=["train.batch_size=8"], placement=placement, out=tmp_path / "b",
                            data="synthetic")
    trainer.train_step()
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    assert scaled == counter.get_total_flops() > 0


def test_baseline_row_makes_every_attention_layer_explicit():
    from ganforge.commands.benchmark.training import BASELINE_OVERRIDES, baseline_variant

    variant = baseline_variant(str(TINY), [])
    assert variant.overrides == [*BASELINE_OVERRIDES, "generator.attention.0.kernel=explicit",
                                 "discriminator.attention.0.kernel=explicit"]
    assert {"train.precision=fp32", "train.tf32=false", "train.compile=false", "train.channels_last=false",
            "train.fused_optimizer=false"} <= set(variant.overrides)
    assert baseline_variant(str(BLUEPRINTS / "dcgan_baseline.yaml"), []).overrides == BASELINE_OVERRIDES


def test_baseline_flag_adds_a_row(cli):
    result = cli("benchmark", TINY, *QUICK, "--no-flops", "--set", "train.batch_size=4", "--baseline")
    assert result.exit_code == 0, result.stderr
    assert [r.split()[0] for r in _rows(result.stdout)] == ["(blueprint)", "baseline"]


def test_benchmark_bad_variant_is_a_blueprint_error(cli):
    result = cli("benchmark", TINY, "--device", "cpu", "--variant", "train.batch_sise=4")
    assert result.exit_code == 2 and "train.batch_sise" in result.stderr


def test_benchmark_needs_a_blueprint_or_a_component(cli):
    result = cli("benchmark")
    assert result.exit_code == 2 and "BLUEPRINT" in result.stderr


def test_attention_component_mode_compares_kernels(cli, tmp_path):
    out = tmp_path / "attention.json"
    result = cli("benchmark", "--component", "self_attention", "--resolutions", "8,16", "--channels", "16",
                 "--batch", "2", "--device", "cpu", "--repeats", "2", "--warmup", "1", "--json", out)
    assert result.exit_code == 0, result.stderr
    assert "8×8" in result.stdout and "16×16" in result.stdout
    report = json.loads(out.read_text())
    assert {(r["size"], r["kernel"]) for r in report["rows"]} == {(s, k) for s in (8, 16)
                                                                  for k in ("fused", "explicit")}
    for comparison in report["comparisons"]:
        assert comparison["keys"] == comparison["positions"] // 4  # pooled keys
        assert comparison["max_output_diff"] < 1e-4 and comparison["max_input_grad_diff"] < 1e-4  # fp32 on CPU
    bad = cli("benchmark", "--component", "self_attention", "--resolutions", "8,x")
    assert bad.exit_code == 2 and "--resolutions" in bad.stderr


def test_loader_mode_times_the_dataset_alone(cli, tmp_path):
    out = tmp_path / "loader.json"
    result = cli("benchmark", TINY, "--data", "loader", "--steps", "2", "--repeats", "2", "--warmup", "1",
                 "--set", "train.batch_size=8", "--json", out)
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.read_text())
    assert [row["num_workers"] for row in report["rows"]] == [0]  # tiny trains with num_workers 0
    assert report["rows"][0]["images_per_s"] > 0 and report["settings"]["dataset"] == "procedural"


def test_real_data_mode_runs_the_engine_stream(cli):
    result = cli("benchmark", TINY, *QUICK, "--no-flops", "--data", "real", "--set", "train.batch_size=4")
    assert result.exit_code == 0, result.stderr
    assert "real data" in result.stdout.splitlines()[0]
