"""`ganforge study`: variants × seeds as run folders, evaluated, tabulated, resumable.

A tiny TorchScript stand-in replaces the Inception network (passed with --inception, as a user
would) and a test metric registered here keeps evaluation cheap and independent of the real ones.
"""

from __future__ import annotations

import csv
import json
import shlex
import shutil
import statistics
from pathlib import Path

import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.registry import register
from ganforge.commands.study.variants import check_variants, parse_study_variant, study_variants
from support import BLUEPRINTS, ROOT, TINY, save_torchscript

FAST = ["--steps", "2", "--device", "cpu", "--set", "train.batch_size=8", "--set", "data.size=64",
        "--set", "train.checkpoint_every=2", "--set", "train.sample_every=1000", "--set", "train.log_every=1"]
NO_ATTENTION = "no-attention: generator.attention=[]; discriminator.attention=[]"
VARIANTS = ["--variant", "", "--variant", NO_ATTENTION]
FOLDERS = ["blueprint/seed-0", "blueprint/seed-1", "no-attention/seed-0", "no-attention/seed-1"]


@register("metric", "study_test_feature_mean")
class FeatureMean:
    """Mean and spread of the generated features: a cheap stand-in metric for the study tests."""

    name = "study_test_feature_mean"
    needs_real = False
    needs_logits = False

    def __init__(self) -> None:
        pass

    def compute(self, *, real: torch.Tensor | None, fake: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
        return {"feature_mean": float(fake.mean()), "feature_spread": float(fake.std())}


@pytest.fixture(scope="module", autouse=True)
def quick_on_shared_cores():  # type: ignore[no-untyped-def]
    """One thread (tiny tensors; avoids OpenMP stalls when other processes share the 2 cores), and no
    spectral-norm power iterations on the meta device, where assembly probes every layer: there they
    compute nothing but take most of the time."""
    from torch.nn.utils.parametrizations import _SpectralNorm

    original = _SpectralNorm._power_method

    def power_method(self, weight_mat, n_power_iterations):  # type: ignore[no-untyped-def]
        if not weight_mat.is_meta:
            original(self, weight_mat, n_power_iterations)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_SpectralNorm, "_power_method", power_method)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inception") / "stand_in.pt"  # 2×2 pooled colours as "features"
    save_torchscript(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten()), path)
    return path


def study_args(out: Path, stand_in: Path, *variants: str) -> list[str]:
    return ["study", str(TINY), *(variants or VARIANTS), "--seeds", "2", *FAST, "--metrics",
            "study_test_feature_mean", "--eval-images", "4", "--inception", str(stand_in), "--out", str(out)]


def invoke(args: list[str]):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from ganforge.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory, stand_in):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("study") / "tiny"
    result = invoke(study_args(out, stand_in))
    assert result.exit_code == 0, result.stderr
    return out, result


def done_values(out: Path, folder: str) -> dict[str, float]:
    return json.loads((out / folder / "done.json").read_text())["values"]


def test_every_variant_and_seed_is_an_ordinary_run_folder(study):
    out, _ = study
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/seed-*")) == FOLDERS
    for folder in FOLDERS:
        run = out / folder
        assert (run / "checkpoints" / "step-000000002.pt").is_file()
        assert (run / "metrics.jsonl").is_file() and (run / "samples").is_dir()
        done = json.loads((run / "done.json").read_text())
        assert done["step"] == 2 and done["metrics"] == ["study_test_feature_mean"]
        assert set(done["values"]) == {"feature_mean", "feature_spread"}
        log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert log[-1]["event"] == "evaluation" and log[-1]["feature_mean"] == done["values"]["feature_mean"]
    assert done_values(out, "blueprint/seed-0") != done_values(out, "blueprint/seed-1")  # seeds differ


def test_tables_hold_mean_and_std_over_seeds(study):
    out, result = study
    markdown = (out / "study.md").read_text()
    assert result.stdout.endswith(markdown)
    lines = markdown.splitlines()
    assert lines[0] == "| variant | overrides | n | feature_mean | feature_spread |"
    for variant, overrides, line in (("blueprint", "(blueprint)", lines[2]),
                                     ("no-attention", "generator.attention=[]; discriminator.attention=[]", lines[3])):
        cells = [f"{statistics.mean(v):.4g} ± {statistics.stdev(v):.4g}"
                 for v in ([done_values(out, f"{variant}/seed-{s}")[key] for s in (0, 1)]
                           for key in ("feature_mean", "feature_spread"))]
        assert line == f"| {variant} | `{overrides}` | 2 | {cells[0]} | {cells[1]} |"

    with open(out / "study.csv", newline="") as handle:
        runs = list(csv.DictReader(handle))
    assert [(r["variant"], r["seed"], r["step"]) for r in runs] == [
        ("blueprint", "0", "2"), ("blueprint", "1", "2"), ("no-attention", "0", "2"), ("no-attention", "1", "2")]
    for row, folder in zip(runs, FOLDERS):
        assert Path(row["folder"]) == out / folder
        assert float(row["feature_mean"]) == done_values(out, folder)["feature_mean"]

    with open(out / "study-summary.csv", newline="") as handle:
        summary = {(r["variant"], r["metric"]): r for r in csv.DictReader(handle)}
    assert len(summary) == 4
    values = [done_values(out, f"no-attention/seed-{s}")["feature_spread"] for s in (0, 1)]
    row = summary[("no-attention", "feature_spread")]
    assert row["n"] == "2"
    assert float(row["mean"]) == pytest.approx(statistics.mean(values), rel=1e-12)
    assert float(row["std"]) == pytest.approx(statistics.stdev(values), rel=1e-12)
    assert (out / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_keeps_finished_runs_and_resumes_an_interrupted_one(study, stand_in, tmp_path, monkeypatch):
    import ganforge.commands.train as training_run
    import ganforge.engine.loop as loop

    out = tmp_path / "copy"
    shutil.copytree(study[0], out)
    shutil.rmtree(out / "no-attention" / "seed-1")
    stamps = {folder: (out / folder / "done.json").stat().st_mtime_ns for folder in FOLDERS[:3]}
    calls: list[tuple[str, bool]] = []
    real_train = training_run.train

    def spy(blueprint, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((Path(kwargs["out"]).relative_to(out).as_posix(), kwargs["resume"]))
        return real_train(blueprint, **kwargs)

    monkeypatch.setattr(training_run, "train", spy)
    class Requested(loop.StopRequest):  # as if Ctrl-C came during step 1
        requested = property(lambda self: True, lambda self, value: None)

    with monkeypatch.context() as patch:  # as Ctrl-C does: the trainer checkpoints and stops after step 1
        patch.setattr(loop, "StopRequest", Requested)
        stopped = invoke(study_args(out, stand_in))
    assert stopped.exit_code == 0, stopped.stderr
    assert calls == [("no-attention/seed-1", True)]
    interrupted = out / "no-attention" / "seed-1"
    assert (interrupted / "checkpoints" / "step-000000001.pt").is_file() and not (interrupted / "done.json").exists()
    assert "rerun the same command to continue" in stopped.stderr
    row = "| no-attention | `generator.attention=[]; discriminator.attention=[]` |"
    assert stopped.stdout.splitlines()[3].startswith(f"{row} 1 |")

    calls.clear()
    resumed = invoke(study_args(out, stand_in))
    assert resumed.exit_code == 0, resumed.stderr
    assert calls == [("no-attention/seed-1", True)]
    assert "resumed from" in resumed.stderr and "at step 1" in resumed.stderr
    assert json.loads((interrupted / "done.json").read_text())["step"] == 2
    assert {folder: (out / folder / "done.json").stat().st_mtime_ns for folder in FOLDERS[:3]} == stamps
    assert f"{row} 2 |" in resumed.stdout

    calls.clear()
    again = invoke(study_args(out, stand_in))
    assert again.exit_code == 0 and calls == []
    assert again.stdout == resumed.stdout


def test_a_diverged_run_is_recorded_and_the_study_goes_on(study, stand_in, tmp_path, monkeypatch):
    import ganforge.commands.train as training_run
    from ganforge.engine.trainer import TrainingDiverged

    out = tmp_path / "copy"
    shutil.copytree(study[0], out)
    shutil.rmtree(out / "no-attention" / "seed-1")
    calls = []

    def diverge(blueprint, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["out"])
        raise TrainingDiverged("non-finite loss at step 7; the last good checkpoint is kept")

    monkeypatch.setattr(training_run, "train", diverge)
    for attempt in range(2):  # the second time the failure is kept, not retried
        result = invoke(study_args(out, stand_in))
        assert result.exit_code == 0, result.stderr
        assert len(calls) == 1
    done = json.loads((out / "no-attention" / "seed-1" / "done.json").read_text())
    assert done["failed"].startswith("non-finite loss at step 7") and done["values"] == {}
    markdown = (out / "study.md").read_text()
    assert "| no-attention | `generator.attention=[]; discriminator.attention=[]` | 1 |" in markdown
    assert "- no-attention, seed 1: non-finite loss at step 7" in markdown
    with open(out / "study.csv", newline="") as handle:
        runs = list(csv.DictReader(handle))
    assert [bool(r["failed"]) for r in runs] == [False, False, False, True]


def test_a_folder_made_with_other_overrides_is_refused(study, stand_in, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(study[0], out)
    result = invoke(study_args(out, stand_in, "--variant", "no-attention: generator.attention=[]"))
    assert result.exit_code == 2
    assert "no-attention/seed-0 was made with overrides" in result.stderr


def test_a_bad_variant_is_one_line_naming_it_and_nothing_trains(stand_in, tmp_path):
    out = tmp_path / "bad"
    result = invoke(study_args(out, stand_in, "--variant", NO_ATTENTION, "--variant", "typo: generator.blokcs=[]"))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --variant 'typo': ") and "blokcs" in lines[0]
    assert not out.exists()


def test_an_unknown_metric_is_refused_before_training(stand_in, tmp_path):
    args = study_args(tmp_path / "bad", stand_in)
    args[args.index("study_test_feature_mean")] = "fdi"
    result = invoke(args)
    assert result.exit_code == 2 and result.stderr.startswith("error: --metrics: ") and "fid" in result.stderr
    assert not (tmp_path / "bad").exists()


def test_variant_names_and_folders():
    named = parse_study_variant("feat 16: generator.attention.0.resolution=16; discriminator.attention.0.resolution=16")
    assert (named.name, named.slug) == ("feat 16", "feat-16")
    assert named.overrides == ["generator.attention.0.resolution=16", "discriminator.attention.0.resolution=16"]
    yaml_colon = parse_study_variant("update_rule.2={type: ema, decay: 0.999}")  # a ':' inside a value is no name
    assert yaml_colon.overrides == ["update_rule.2={type: ema, decay: 0.999}"]
    assert yaml_colon.name == yaml_colon.overrides[0]
    assert parse_study_variant("").overrides == [] and parse_study_variant("").slug == "blueprint"
    assert parse_study_variant("baseline:").overrides == []
    assert [v.slug for v in study_variants([])] == ["blueprint"]
    with pytest.raises(GanforgeError, match="would share the folder"):
        study_variants(["a: train.seed=1", "A: train.seed=2"])
    with pytest.raises(GanforgeError, match="empty name"):
        parse_study_variant(" : train.seed=1")


def table1_variants() -> list[str]:
    """The --variant values of the README's Table 1 command, as a shell would pass them."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("ganforge study blueprints/sagan_imagenet128.yaml")
    command = readme[start: readme.index("```", start)].replace("\\\n", " ")
    words = shlex.split(command)
    return [words[i + 1] for i, word in enumerate(words) if word == "--variant"]


def test_the_readme_table1_study_assembles_every_variant():
    texts = table1_variants()
    variants = study_variants(texts)
    assert [v.name for v in variants] == ["no-attention", *(f"attention-feat{r}" for r in (8, 16, 32, 64)),
                                          *(f"residual-feat{r}" for r in (8, 16, 32, 64))]
    assemblies = check_variants(str(BLUEPRINTS / "sagan_imagenet128.yaml"), overrides=[], variants=variants)
    for variant, assembly in zip(variants, assemblies):
        for plan in (assembly.generator, assembly.discriminator):
            extra = [layer for layer in plan.layers if ".attention" in layer.path]
            if variant.name == "no-attention":
                assert extra == []
                continue
            kind, resolution = variant.name.split("-feat")
            assert len(extra) == 1, (variant.name, plan.role)
            layer = extra[0]
            assert layer.output_shape == layer.input_shape and layer.output_shape[1] == int(resolution)
            expected = "self_attention" if kind == "attention" else ("up_resblock" if plan.role == "generator"
                                                                     else "down_resblock")
            assert layer.component == expected, (variant.name, plan.role)


def test_a_done_json_from_before_the_coverage_rename_reads_in_current_names(tmp_path, capsys):
    from ganforge.commands.study.runner import read_done
    from ganforge.commands.study.variants import check_metrics

    old = {"step": 250, "checkpoint": "c.pt", "metrics": ["consistency", "coverage"],
           "values": {"consistency": 0.5, "coverage": 0.125}, "protocol": {}}
    (tmp_path / "done.json").write_text(json.dumps(old))
    done = read_done(tmp_path)
    assert done["metrics"] == ["consistency", "combination_coverage"]
    assert done["values"] == {"consistency": 0.5, "combination_coverage": 0.125}  # no stale "coverage" column
    # asked for under its former name, the metric is recorded under its current one: nothing to re-evaluate
    assert check_metrics(["consistency", "coverage", "combination_coverage"]) == ["consistency",
                                                                                 "combination_coverage"]
    # density_coverage's own `coverage` value is left alone
    both = {**old, "metrics": ["coverage", "density_coverage"], "values": {"coverage": 0.9, "density": 1.0}}
    (tmp_path / "done.json").write_text(json.dumps(both))
    assert read_done(tmp_path)["values"] == {"coverage": 0.9, "density": 1.0}
