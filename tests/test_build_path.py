"""One path from blueprint to run (``ganforge.engine.build``), and the registry threaded along it."""

from __future__ import annotations

import json

import pytest
import torch

from support import TINY

FAST = ["train.batch_size=8", "data.size=64", "train.log_every=1", "train.sample_every=1000", "train.compile=false"]


class ToyMeanMetric:
    """Mean pixel value of the generated images: a metric only the custom registry holds."""

    name = "toy_mean"
    needs_real = False
    needs_logits = False
    needs_inception_features = False

    def __init__(self) -> None:
        self.detector = None

    def bind(self, *, data):  # type: ignore[no-untyped-def]
        bound = type(self)()
        bound.detector = _MeanDetector()
        return bound

    def compute(self, *, real, fake, fake_logits=None, real_stats=None):  # type: ignore[no-untyped-def]
        return {"toy_mean": float(fake.mean())}


class _MeanDetector:
    description = "toy mean detector"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1).mean(1, keepdim=True)


def toy_squares(*, resolution: int, channels: int = 3, num_classes: int = 4, size: int = 64, seed: int = 0):
    """Procedural images under a name the global registry does not know."""
    from ganforge.components.data.procedural import procedural

    return procedural(resolution=resolution, channels=channels, num_classes=num_classes, size=size, seed=seed)


@pytest.fixture(scope="module")
def custom():
    from ganforge.registry import BUILTIN_PACKAGES, Registry

    registry = Registry(builtin_packages=BUILTIN_PACKAGES)
    registry.add("dataset", "toy_squares", toy_squares)
    registry.add("metric", "toy_mean", ToyMeanMetric)
    return registry


@pytest.fixture(scope="module")
def custom_run(custom, tmp_path_factory):
    """Two steps of tiny on ``toy_squares``, trained through ``train(registry=custom)``."""
    from ganforge.commands.train import train

    out = tmp_path_factory.mktemp("runs") / "toy"
    step = train(str(TINY), overrides=[*FAST, "data={type: toy_squares, resolution: 16, num_classes: 4, size: 64}"],
                 out=str(out), steps=2, resume=False, device="cpu", seed=None, registry=custom)
    assert step == 2
    return out


def test_the_global_registry_lacks_the_toy_components(custom):
    from ganforge.errors import GanforgeError
    from ganforge.registry import default_registry

    for kind, name in (("dataset", "toy_squares"), ("metric", "toy_mean")):
        assert custom.get(kind, name) is not None
        with pytest.raises(GanforgeError):
            default_registry().get(kind, name)



def test_restore_and_evaluate_use_the_registry_they_are_given(custom, custom_run):
    from ganforge.engine.restore import restore
    from ganforge.errors import GanforgeError
    from ganforge.commands.evaluate import evaluate_checkpoint
    from ganforge.evaluation import evaluate_generator

    run = restore(custom_run, registry=custom)
    assert run.registry is custom and run.step == 2
    direct = evaluate_generator(run.generator, loaded=run.loaded, metrics=["toy_mean"], n=8, progress=False,
                                registry=custom)
    assert set(direct.values) == {"toy_mean"}
    with pytest.raises(GanforgeError, match="toy_mean"):  # the global registry does not know it
        evaluate_generator(run.generator, loaded=run.loaded, metrics=["toy_mean"], n=8, progress=False)

    restored, result = evaluate_checkpoint(custom_run, metrics=["toy_mean"], n=8, device="cpu", progress=False,
                                           registry=custom, warn=lambda message: None)
    assert restored.registry is custom
    assert result.values["toy_mean"] == pytest.approx(direct.values["toy_mean"])
    records = [json.loads(line) for line in (custom_run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["event"] == "evaluation" and records[-1]["toy_mean"] == result.values["toy_mean"]


def test_reference_data_comes_from_the_given_registry(custom, custom_run):
    from ganforge.engine.restore import restore
    from ganforge.evaluation import _reference_source

    run = restore(custom_run, registry=custom)
    source = _reference_source(run.loaded, reference=None, n=8, registry=custom)
    assert "toy_squares" in source.description and len(source.dataset) == 64


def _describe(assembly, plan):  # type: ignore[no-untyped-def]
    from ganforge.commands.inspection import describe

    return json.dumps(describe(assembly, plan), sort_keys=True, default=str)


def test_build_run_gives_the_assembly_of_the_old_sequence():
    from ganforge.assembly import assemble
    from ganforge.blueprint.validation import load_blueprint
    from ganforge.registry import default_registry
    from ganforge.engine.build import build_run
    from ganforge.engine.planning import plan_training

    loaded = load_blueprint(TINY, ["train.batch_size=8"])
    registry = default_registry()
    spec = build_run(TINY, overrides=["train.batch_size=8"])
    assert spec.registry is registry and spec.blueprint == loaded.blueprint
    assert _describe(spec.assembly, spec.plan) == _describe(assemble(loaded, registry), plan_training(loaded, registry))


def test_overrides_on_a_loaded_blueprint_equal_loading_with_all_of_them():
    from ganforge.blueprint.validation import load_blueprint
    from ganforge.engine.build import load_run_blueprint

    common, extra = ["train.batch_size=8"], ["train.precision=fp32", "generator.attention.0.kernel=explicit"]
    derived = load_run_blueprint(load_blueprint(TINY, common), extra)
    direct = load_blueprint(TINY, [*common, *extra])
    assert derived.document == direct.document and derived.origins == direct.origins
    assert derived.blueprint == direct.blueprint and derived.file == direct.file


@pytest.fixture
def build_run_calls(monkeypatch):
    """Every ``build_run`` call (blueprint, overrides), still building the run."""
    from ganforge.engine import build

    calls = []
    real = build.build_run

    def spy(blueprint, *, overrides=(), registry=None):  # type: ignore[no-untyped-def]
        calls.append((blueprint, list(overrides)))
        return real(blueprint, overrides=overrides, registry=registry)

    monkeypatch.setattr(build, "build_run", spy)
    return calls


def test_inspect_and_train_build_through_build_run(cli, build_run_calls, monkeypatch, tmp_path):
    from ganforge.commands import train as run_module
    from ganforge.engine.build import build_run

    result = cli("inspect", TINY, "--set", "train.batch_size=8", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert build_run_calls == [(str(TINY), ["train.batch_size=8"])]
    spec = build_run(TINY, overrides=["train.batch_size=8"])
    assert json.dumps(json.loads(result.stdout), sort_keys=True, default=str) == _describe(spec.assembly, spec.plan)

    seen = []

    def stop(run_dir, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs)
        return 0

    monkeypatch.setattr(run_module, "_train", stop)
    build_run_calls.clear()
    run_module.train(str(TINY), overrides=["train.batch_size=8"], out=str(tmp_path / "r"), steps=1, resume=False,
                     device="cpu", seed=None)
    assert build_run_calls == [(str(TINY), ["train.batch_size=8"])]
    assert _describe(seen[0]["spec"].assembly, seen[0]["spec"].plan) == _describe(spec.assembly, spec.plan)


def test_benchmark_reads_the_blueprint_once(cli, build_run_calls, monkeypatch):
    from ganforge.blueprint import validation

    reads = []
    real = validation.load_blueprint

    def spy(path, overrides=()):  # type: ignore[no-untyped-def]
        reads.append(str(path))
        return real(path, overrides)

    monkeypatch.setattr(validation, "load_blueprint", spy)
    result = cli("benchmark", TINY, "--device", "cpu", "--steps", "1", "--repeats", "1", "--warmup", "0",
                 "--set", "train.batch_size=4", "--set", "train.compile=false", "--variant", "train.precision=fp32",
                 "--baseline")
    assert result.exit_code == 0, result.stderr
    assert reads == [str(TINY)]
    assert "baseline" in result.stdout and "train.precision=fp32" in result.stdout
    # one build per row and one per FLOP count, each from the loaded blueprint, with synthetic data
    assert len(build_run_calls) == 4
    assert all(not isinstance(blueprint, str) for blueprint, _ in build_run_calls)
    assert all(any(o.startswith("data={type: procedural") for o in overrides) for _, overrides in build_run_calls)


def test_synthetic_trainer_repeats_one_batch_without_patching_the_stream(tmp_path):
    from ganforge.engine.data_stream import DataStream
    from ganforge.engine.distributed import place_process
    from ganforge.engine.build import build_trainer

    trainer = build_trainer(str(TINY), overrides=["train.batch_size=8"], placement=place_process("cpu"),
                            out=tmp_path, data="synthetic")
    assert trainer.update.stream.repeat and "next" not in vars(trainer.update.stream)
    assert type(trainer.update.stream).next is DataStream.next
    first = trainer.update.stream.next()
    assert trainer.update.stream.next() is first
    assert trainer.loaded.blueprint.data.type == "procedural" and trainer.train.num_workers == 0
    real = build_trainer(str(TINY), overrides=["train.batch_size=8", "data.size=64"], placement=place_process("cpu"),
                         out=tmp_path / "real", data="real")
    assert not real.update.stream.repeat and real.update.stream.next()[0] is not real.update.stream.next()[0]


def test_metric_binding_uses_the_runs_registry():
    """A run's own registry also builds the data a detector-based metric binds to."""
    import functools

    from ganforge.blueprint.schema import DataSpec
    from ganforge.evaluation import _bind
    from ganforge.registry import Registry, default_registry

    seen = []
    custom = Registry()
    real = default_registry().get("dataset", "procedural")

    @functools.wraps(real.obj)  # the same declared settings
    def procedural(**settings):
        seen.append(settings)
        return real.obj(**settings)

    custom.add("dataset", "procedural", procedural, origin="test")
    metric = default_registry().get("metric", "procedural_pr").build({"reference": 8})
    _bind(metric, data=DataSpec(type="procedural", resolution=8, num_classes=2, size=16), registry=custom)
    assert seen and seen[0]["size"] == 16

    class OldStyle:  # a plugin metric whose bind takes only data
        def bind(self, *, data):
            return ("bound", data)

    assert _bind(OldStyle(), data="d", registry=custom) == ("bound", "d")


def test_a_trainer_without_an_evaluator_builds_and_refuses_to_run_an_evaluating_blueprint(tmp_path):
    """The benchmark builds trainers it never runs; a run that would evaluate needs an evaluator before step 1."""
    from ganforge.engine.build import build_trainer
    from ganforge.engine.distributed import place_process
    from ganforge.errors import GanforgeError

    trainer = build_trainer(str(TINY), overrides=["train.batch_size=8", "train.eval_every=2"],
                            placement=place_process("cpu"), out=tmp_path / "run", data="synthetic", steps=2)
    trainer.train_step()  # what the benchmark does
    with pytest.raises(GanforgeError, match="train.eval_every: this run was built without an evaluator"):
        trainer.run()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_prebuilt_dataset_is_refused_for_a_rebuilt_run(tmp_path):
    """``dataset=`` belongs to the RunSpec it came from; with overrides the run is rebuilt, so it would not match."""
    from ganforge.engine.build import build_dataset, build_run, build_trainer
    from ganforge.engine.distributed import place_process

    spec = build_run(TINY, overrides=["train.batch_size=8", "data.size=64"])
    dataset = build_dataset(spec.loaded, spec.registry, spec.assembly.components)
    trainer = build_trainer(spec, placement=place_process("cpu"), out=tmp_path / "a", dataset=dataset)
    assert trainer.update.stream.dataset is dataset
    with pytest.raises(ValueError, match="dataset= is for the RunSpec"):
        build_trainer(spec, overrides=["train.batch_size=4"], placement=place_process("cpu"), out=tmp_path / "b",
                      dataset=dataset)
