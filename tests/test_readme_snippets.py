"""Every ```yaml and ```bash block of README.md and plugins/*/README.md is exercised.

YAML: a full blueprint (or one with ``extends``) is loaded, assembled and planned as written; a
fragment is merged over blueprints/tiny.yaml first. Bash: every ``ganforge`` command (also under
``torchrun -m ganforge``) is parsed by click's own parser for its subcommand, so a renamed or
missing option fails here, and its blueprint is loaded with its ``--set`` values; cheap commands
run. ``ALLOWED`` lists what cannot run here, with the reason. The Python examples of "One example
per kind" are executed and checked against their kind's contract.
"""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from support import ROOT, TINY

READMES = [ROOT / "README.md", *sorted((ROOT / "plugins").glob("*/README.md"))]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)

# Commands that are parsed (subcommand and options) but not run, and why.
ALLOWED = {
    "pip": "installs packages (network, site-packages); the plugin's pyproject is checked instead",
    "python": "`python -m pytest` is the test suite itself",
    "train": "minutes to days of training (ImageNet, GPUs); tests/test_training.py runs the engine",
    "study": "trains several seeds per variant; tests/test_study.py runs small studies",
    "prepare": "needs the ImageNet folder",
    "benchmark": "needs CUDA (--device cuda) or ImageNet; tests/test_benchmark.py runs it on CPU",
    "export": "needs a trained run; tests/test_api.py exports one and samples from the file",
    "sample": "needs a trained run; tests/test_api.py and tests/test_sample_evaluate.py run it",
    "evaluate": "needs a trained run; tests/metrics/test_procedural_pr.py evaluates one with procedural_pr",
}
CHEAP = {"components", "inspect"}  # run for real


def blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for readme in READMES:
        text = readme.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                line = text[: match.start()].count("\n") + 1
                found.append((f"{readme.relative_to(ROOT)}:{line}", match.group(2)))
    return found


def registry_with_example_plugin():
    from ganforge.plugins import PluginIndex
    from ganforge.registry import BUILTIN_PACKAGES, Registry

    example = ROOT / "plugins" / "ganforge-example"
    if str(example / "src") not in sys.path:
        sys.path.insert(0, str(example / "src"))
    project = tomllib.loads((example / "pyproject.toml").read_text())["project"]
    eps = [metadata.EntryPoint(name=n, value=v, group="ganforge.plugins")
           for n, v in project["entry-points"]["ganforge.plugins"].items()]
    return Registry(builtin_packages=BUILTIN_PACKAGES, plugin_source=PluginIndex.from_entry_points(eps))


def check_blueprint(path: Path | str, overrides: list[str] = ()) -> None:
    from ganforge.assembly import assemble
    from ganforge.blueprint.validation import load_blueprint
    from ganforge.engine.planning import plan_training

    loaded = load_blueprint(str(path), list(overrides))
    registry = registry_with_example_plugin()
    assemble(loaded, registry)
    plan_training(loaded, registry)


def test_snippets_are_found():
    assert len(blocks("yaml")) >= 2 and len(blocks("bash")) >= 10


@pytest.mark.parametrize(("where", "text"), blocks("yaml"), ids=[w for w, _ in blocks("yaml")])
def test_yaml_snippet(where, text, tmp_path):
    import yaml

    document = yaml.safe_load(text)
    assert isinstance(document, dict), where
    readme_dir = (ROOT / where.split(":")[0]).parent
    if "extends" in document:  # relative to the README, as a user's file next to it would be
        text = re.sub(r"^extends:\s*(\S+)", lambda m: f"extends: {(readme_dir / m.group(1)).resolve()}", text,
                      flags=re.M)
    elif not {"generator", "discriminator", "data"} <= set(document):
        text = f"extends: {TINY}\n{text}"  # a fragment: over the tiny blueprint
    path = tmp_path / "snippet.yaml"
    path.write_text(text)
    check_blueprint(path)


def commands(text: str) -> list[list[str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            out.append(shlex.split(line))
    return out


BASH = [(f"{where} #{i}", argv) for where, text in blocks("bash") for i, argv in enumerate(commands(text))]


@pytest.mark.parametrize(("where", "argv"), BASH, ids=[w for w, _ in BASH])
def test_bash_snippet(where, argv, cli):
    from ganforge.cli import cli as group

    if argv[0] == "torchrun":
        argv = argv[argv.index("-m") + 1:]
        assert argv[0] == "ganforge", where
    if argv[0] == "pip":
        assert argv[1] == "install", where
        target = argv[-1]
        if target.startswith("-e") or target.startswith("."):
            target = argv[-1].strip('"')
            extra = re.search(r"\[(\w+)\]", target)
            project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
            assert extra is None or extra.group(1) in project.get("optional-dependencies", {}), where
        else:
            assert (ROOT / target / "pyproject.toml").is_file(), where
        return
    if argv[0] == "python":
        assert argv[1:3] == ["-m", "pytest"], where
        return
    assert argv[0] == "ganforge", f"{where}: unexpected command {argv[0]!r}; add it to ALLOWED with a reason"
    name, args = argv[1], argv[2:]
    command = group.commands.get(name)
    assert command is not None, f"{where}: no subcommand {name!r}"
    if name in CHEAP:
        result = cli(*argv[1:])
        assert result.exit_code == 0, f"{where}: {result.output}"
        return
    assert name in ALLOWED, f"{where}: {name} neither runs here nor is allow-listed"
    # click's own parser: unknown options, missing values and bad choices fail here
    ctx = command.make_context(name, list(args))
    blueprint = ctx.params.get("blueprint") or ctx.params.get("source")
    if isinstance(blueprint, str) and blueprint.endswith((".yaml", ".yml")):
        check_blueprint(ROOT / blueprint, list(ctx.params.get("overrides") or ()))


def test_plugin_readme_lists_its_entry_points():
    example = ROOT / "plugins" / "ganforge-example"
    project = tomllib.loads((example / "pyproject.toml").read_text())["project"]
    readme = (example / "README.md").read_text()
    for name, value in project["entry-points"]["ganforge.plugins"].items():
        assert f"`{name}`" in readme and f"`{value}`" in readme


# -- "One example per kind": run each and check it against its kind's contract --------------------
KIND_OF = {"Blur": "layer", "MeanLogit": "head", "LeastSquares": "loss", "LogitPenalty": "regularizer",
           "StepDecay": "update_rule", "sgd": "optimizer", "kaiming": "init", "noise_images": "dataset",
           "MeanFeatureGap": "metric", "UniformLatent": "latent", "ClassEmbedding": "context",
           "RealLogitTracker": "controller"}


def test_one_example_per_kind_runs():
    import torch
    import torch.nn.functional as F
    from torch import nn

    from ganforge.contracts import check_contract
    from ganforge.records import DiscriminatorOutput, LabelPair
    from ganforge.registry import KINDS
    from ganforge.engine.planning import OptimizerChoice, TrainingPlan

    text = (ROOT / "README.md").read_text()
    section = text[text.index("### One example per kind"):]
    section = section[: section.index("\n## ")]
    namespace: dict = {"torch": torch, "nn": nn, "F": F}
    for match in FENCE.finditer(section):
        if match.group(1) == "python":
            exec(compile(match.group(2), "README.md", "exec"), namespace)
    assert set(KIND_OF.values()) == set(KINDS) - {"block"}  # blocks follow the layer example
    for name, kind in KIND_OF.items():
        check_contract(kind, namespace[name])

    x = torch.randn(2, 3, 8, 8)
    assert namespace["Blur"](in_channels=3, channels=4)(x).shape == (2, 4, 8, 8)
    assert namespace["MeanLogit"](in_channels=3)(x).shape == (2, 1)
    loss = namespace["LeastSquares"]()
    assert loss.discriminator_loss(real=DiscriminatorOutput.of(torch.ones(2)),
                                   fake=DiscriminatorOutput.of(torch.zeros(2))) == 0
    z = namespace["UniformLatent"](latent_dim=5).draw(3, generator=torch.Generator().manual_seed(0), device="cpu")["z"]
    assert z.shape == (3, 5) and z.abs().max() <= 1
    embedding = namespace["ClassEmbedding"](num_classes=4, dim=6)(labels=torch.tensor([0, 3]))
    assert embedding["class_embedding"].shape == (2, 6)
    head = namespace["ClassifyingHead"](in_channels=3, num_classes=4)
    out = DiscriminatorOutput.of(head(x))
    check_contract("loss", namespace["HingeWithClassifier"])
    labels = LabelPair(real=torch.tensor([0, 1]), fake=torch.tensor([2, 3]))
    ac = namespace["HingeWithClassifier"](weight=0.0)
    with torch.no_grad():
        assert float(ac.discriminator_loss(real=out, fake=out, labels=labels)) == pytest.approx(
            float(F.relu(1 - out.logit).mean() + F.relu(1 + out.logit).mean()))
    tracker, module = namespace["RealLogitTracker"](decay=0.5), nn.Identity()
    tracker.attach(modules=[module])
    tracker.feedback(real=DiscriminatorOutput.of(torch.full((4, 1), 2.0)))
    assert tracker.mean == module.target == 1.0 and tracker.state_dict() == {"mean": 1.0}
    head = namespace["MeanLogit"](in_channels=3)
    assert namespace["LogitPenalty"]()(discriminator=head, real=x, fake=x).ndim == 0
    param = nn.Parameter(torch.ones(3))
    optimizer = namespace["sgd"]()([param])
    namespace["kaiming"]()(nn.Sequential(nn.Conv2d(3, 4, 3)))
    image, label = namespace["noise_images"](resolution=8, num_classes=2)[1]
    assert image.shape == (3, 8, 8) and image.abs().max() <= 1 and label == 1
    gap = namespace["MeanFeatureGap"]().compute(real=torch.zeros(4, 2048), fake=torch.ones(4, 2048))
    assert gap["feature_gap"] == pytest.approx(2048 ** 0.5)

    plan = TrainingPlan(optimizers={r: OptimizerChoice(name="sgd", settings={"lr": 0.1}) for r in
                                    ("generator", "discriminator")})
    namespace["StepDecay"](every=10).apply(plan)
    plan.step_hooks[0](25, 100, {"generator": optimizer, "discriminator": optimizer})
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
