"""Third-party plugins: discovered from entry points, loaded lazily, isolated when broken."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support import ROOT, TINY, run_ganforge


def fake_distribution(site: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Install a distribution the way pip lays it out: code plus a .dist-info with entry_points.txt."""
    for module, code in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[ganforge.plugins]\n{lines}\n")


GOOD_LAYER = '''
    import pathlib, os
    pathlib.Path(os.environ["MARKER"]).write_text("imported")
    import torch
    from torch import nn

    class Doubler(nn.Module):
        """Doubles its input (a test plugin layer)."""
        def __init__(self, *, in_channels: int, factor: float = 2.0) -> None:
            super().__init__()
            self.factor = factor
        def forward(self, x):
            return x * self.factor
'''


@pytest.fixture
def site(tmp_path: Path):
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "good-plugin", {"layer.doubler": "good_plugin:Doubler"}, {"good_plugin": GOOD_LAYER})
    fake_distribution(site, "broken-plugin", {"layer.exploder": "broken_plugin:Exploder"},
                      {"broken_plugin": "raise RuntimeError('boom at import')\n"})
    fake_distribution(site, "misnamed-plugin", {"layers.nope": "good_plugin:Doubler"}, {})
    return site


def env_for(site: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": f"{site}", "MARKER": str(tmp_path / "marker"), **extra}


def blueprint_with_doubler(tmp_path: Path, layer: str = "doubler") -> Path:
    path = tmp_path / "with_plugin.yaml"
    path.write_text(f"extends: {TINY}\ngenerator:\n  attention:\n    - {{resolution: 8, type: {layer}}}\n")
    return path


def test_plugin_components_are_listed_and_broken_plugins_reported(site, tmp_path):
    result = run_ganforge("components", "layer", env=env_for(site, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "doubler" in result.stdout and "plugin good-plugin 1.0" in result.stdout
    assert "snconv" in result.stdout  # built-ins still there
    assert "broken-plugin" in result.stderr and "boom at import" in result.stderr
    assert "misnamed-plugin" in result.stderr and "KIND.NAME" in result.stderr
    assert "Traceback" not in result.stderr


def test_plugin_component_builds_in_a_blueprint(site, tmp_path):
    blueprint = blueprint_with_doubler(tmp_path)
    result = run_ganforge("inspect", blueprint, "--format", "json", env=env_for(site, tmp_path))
    assert result.returncode == 0, result.stderr
    layers = json.loads(result.stdout)["generator"]["layers"]
    assert "doubler" in [layer["component"] for layer in layers]


def test_plugins_are_imported_only_when_needed(site, tmp_path):
    env = env_for(site, tmp_path)
    marker = tmp_path / "marker"
    assert run_ganforge("--help", env=env).returncode == 0
    assert run_ganforge("inspect", TINY, env=env).returncode == 0
    assert not marker.exists(), "a blueprint using only built-ins imported a plugin"
    assert run_ganforge("inspect", blueprint_with_doubler(tmp_path), env=env).returncode == 0
    assert marker.exists()


def test_broken_plugin_named_in_blueprint_is_a_clear_error(site, tmp_path):
    result = run_ganforge("inspect", blueprint_with_doubler(tmp_path, "exploder"), env=env_for(site, tmp_path))
    assert result.returncode == 2
    assert "broken-plugin" in result.stderr and "boom at import" in result.stderr
    assert "generator.attention[0].type" in result.stderr
    assert "Traceback" not in result.stderr


def test_disable_plugins(site, tmp_path):
    env = env_for(site, tmp_path, GANFORGE_DISABLE_PLUGINS="1")
    result = run_ganforge("components", "layer", env=env)
    assert result.returncode == 0
    assert "doubler" not in result.stdout and "broken" not in result.stderr
    result = run_ganforge("inspect", blueprint_with_doubler(tmp_path), env=env)
    assert result.returncode == 2 and "unknown component 'doubler'" in result.stderr


def test_plugin_shadowing_a_builtin_keeps_the_builtin_and_warns(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "shadow-plugin", {"loss.hinge": "good_plugin:Doubler"}, {"good_plugin": GOOD_LAYER})
    env = env_for(site, tmp_path)
    result = run_ganforge("inspect", TINY, env=env)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1
    assert "builtin" in warnings[0] and "shadow-plugin" in warnings[0] and "shadow-plugin:hinge" in warnings[0]


def test_duplicate_entry_points_are_deduplicated():
    from importlib.metadata import EntryPoint

    from ganforge.plugins import PluginIndex

    ep = EntryPoint(name="layer.x", value="m:X", group="ganforge.plugins")
    index = PluginIndex.from_entry_points([ep, ep])
    assert len(index.entries[("layer", "x")]) == 1 and not index.broken


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """pip-install plugins/ganforge-example for real, into a private target directory."""
    target = tmp_path_factory.mktemp("example_site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT / "plugins" / "ganforge-example")], check=True,
                   capture_output=True, timeout=300)
    return target


def test_installed_example_plugin_appears_and_builds(installed_example, tmp_path):
    env = {"PYTHONPATH": str(installed_example)}
    listing = run_ganforge("components", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "coord_conv" in listing.stdout and "relativistic_hinge" in listing.stdout
    assert "plugin ganforge-example 0.1.0" in listing.stdout
    blueprint = tmp_path / "example.yaml"
    blueprint.write_text(textwrap.dedent(f"""
        extends: {TINY}
        discriminator:
          blocks:
            - {{type: coord_conv, channels: 16}}
            - {{type: down_resblock, channels: 32}}
            - {{type: down_resblock, channels: 64}}
        loss: {{type: relativistic_hinge}}
    """))
    result = run_ganforge("inspect", blueprint, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    first = report["discriminator"]["layers"][0]
    assert first["component"] == "coord_conv" and first["output_shape"] == [16, 16, 16]
    assert report["loss"]["type"] == "relativistic_hinge"
    show = run_ganforge("components", "show", "coord_conv", env=env)
    assert "plugin ganforge-example" in show.stdout and "channels" in show.stdout
