"""The example's new components together in one blueprint, trained by ganforge in-process.

Assembly pairs them (the instance-noise layer requires its controller, the loss requires the
head's features), the context reaches the FiLM layers, and a run stopped and resumed ends with the
weights, the controller's state and the buffer it writes of an uninterrupted run.
"""

from __future__ import annotations

import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import torch

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
TINY = PLUGIN_ROOT.parents[1] / "blueprints" / "tiny.yaml"

try:
    import ganforge_example  # noqa: F401  (installed copy, if any)
except ImportError:
    sys.path.insert(0, str(PLUGIN_ROOT / "src"))

BLUEPRINT = f"""
extends: {TINY}
generator:
  context:
    - {{type: layer_codes, dim: 8}}
  blocks:
    - {{type: up_resblock, channels: 32}}   # 8×8
    - {{type: film}}
    - {{type: up_resblock, channels: 16}}   # 16×16
    - {{type: film}}
  attention: []
discriminator:
  blocks:
    - {{type: instance_noise, strength: 0.5}}
    - {{type: down_resblock, channels: 16, optimized: true}}
    - {{type: down_resblock, channels: 32}}
  attention: []
  head: {{type: feature_output}}
loss: {{type: hinge_feature_matching, feature_weight: 0.5}}
regularizers:
  - {{type: image_mean, weight: 0.1}}
controllers:
  - {{type: logit_tracker, momentum: 0.5}}
"""

FAST = ["--device", "cpu", "--set", "train.batch_size=4", "--set", "data.size=16", "--set", "train.log_every=1",
        "--set", "train.sample_every=1000", "--set", "train.checkpoint_every=1", "--set", "train.keep_checkpoints=10"]


@pytest.fixture
def ganforge_cli(monkeypatch):
    """ganforge's CLI in-process, its registry holding the built-ins and this plugin's entry points."""
    from click.testing import CliRunner

    import ganforge.registry as registry_module
    from ganforge.cli import cli
    from ganforge.plugins import PluginIndex

    with open(PLUGIN_ROOT / "pyproject.toml", "rb") as fh:
        group = tomllib.load(fh)["project"]["entry-points"]["ganforge.plugins"]
    eps = [metadata.EntryPoint(name=n, value=v, group="ganforge.plugins") for n, v in group.items()]
    registry = registry_module.Registry(builtin_packages=registry_module.BUILTIN_PACKAGES,
                                        plugin_source=PluginIndex.from_entry_points(eps), include_all_declared=True)
    monkeypatch.setattr(registry_module, "_default", registry)
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _write(tmp_path: Path, text: str, name: str = "example.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _checkpoint(run: Path, step: int) -> dict:
    return torch.load(run / "checkpoints" / f"step-{step:09d}.pt", weights_only=False, map_location="cpu")


def test_assembly_refuses_a_missing_partner(ganforge_cli, tmp_path):
    without_controller = BLUEPRINT.replace("controllers:\n  - {type: logit_tracker, momentum: 0.5}\n", "")
    result = ganforge_cli("inspect", _write(tmp_path, without_controller))
    assert result.exit_code == 2, result.stderr
    assert "discriminator.blocks[0]" in result.stderr and "'logit_tracker'" in result.stderr  # names the partner
    without_features = BLUEPRINT.replace("head: {type: feature_output}", "head: {type: projection_output}")
    result = ganforge_cli("inspect", _write(tmp_path, without_features))
    assert result.exit_code == 2, result.stderr
    assert "hinge_feature_matching" in result.stderr and "'features'" in result.stderr  # names the missing extra


def test_trains_and_resumes_exactly(ganforge_cli, tmp_path):
    blueprint = _write(tmp_path, BLUEPRINT)
    shown = ganforge_cli("inspect", blueprint)
    assert shown.exit_code == 0, shown.stderr
    assert "code[0]" in shown.stdout and "code[1]" in shown.stdout  # each film layer gets its own code

    for out, steps, extra in (("straight", 2, ()), ("split", 1, ()), ("split", 2, ("--resume",))):
        result = ganforge_cli("train", blueprint, "--out", tmp_path / out, "--steps", steps, *FAST, *extra)
        assert result.exit_code == 0, result.stderr

    straight, split = _checkpoint(tmp_path / "straight", 2), _checkpoint(tmp_path / "split", 2)
    for network in ("generator", "discriminator"):
        assert straight[network].keys() == split[network].keys()
        different = [k for k in straight[network] if not torch.equal(straight[network][k], split[network][k])]
        assert not different, different[:5]
    tracker = straight["components"][0]["controllers[0]"]
    assert tracker == split["components"][0]["controllers[0]"] and tracker["observed"] == 2
    # The controller wrote its mean into the layer that requires it (D's first layer), a buffer in D's weights.
    assert straight["discriminator"]["layers.0.tracked_logit"].item() == pytest.approx(tracker["published"])
    assert tracker["published"] != 0.0
