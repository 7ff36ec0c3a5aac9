"""Plugins cannot take the tool down: sys.exit at import, shadowed built-ins, broken contracts, collisions."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from support import TINY, assert_clean_failure
from test_plugins import fake_distribution

LOSS = '''
    class {name}:
        """A test plugin loss."""
        def __init__(self, *, margin: float = 1.0) -> None:
            self.margin = margin
        def discriminator_loss(self, *, real_logits, fake_logits):
            return (self.margin - real_logits).relu().mean() + (self.margin + fake_logits).relu().mean()
        def generator_loss(self, *, fake_logits):
            return -fake_logits.mean()
'''

POSITIONAL_LOSS = '''
    class PosLoss:
        """Documented rules say keyword-only; this one is positional."""
        def __init__(self) -> None:
            pass
        def discriminator_loss(self, real_logits, fake_logits):
            return fake_logits.mean() - real_logits.mean()
        def generator_loss(self, fake_logits):
            return -fake_logits.mean()
'''

UNTYPED_LAYER = '''
    from torch import nn

    class Untyped(nn.Module):
        """No annotations: its settings would silently accept anything."""
        def __init__(self, *, in_channels, factor=2.0):
            super().__init__()
            self.factor = factor
        def forward(self, x):
            return x * self.factor
'''

TWIN_LAYER = '''
    from torch import nn

    class Twin(nn.Module):
        """A layer two packages both call 'twin'."""
        def __init__(self, *, in_channels: int) -> None:
            super().__init__()
        def forward(self, x):
            return x
'''


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch):
    """Install fake distributions in-process: ``plugins(name, entry_points, modules)``, one site dir each.

    Sites are put on sys.path in call order (so entry points are discovered in that order) and
    the process-wide registry is rebuilt for the test, then restored.
    """
    import ganforge.registry as registry_module

    monkeypatch.delenv("GANFORGE_DISABLE_PLUGINS", raising=False)
    monkeypatch.setattr(registry_module, "_default", None)
    added_modules: list[str] = []
    sites: list[Path] = []

    def install(name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
        site = tmp_path / f"site{len(sites)}"
        site.mkdir()
        fake_distribution(site, name, entry_points, modules)
        sites.append(site)
        added_modules.extend(modules)
        monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
        importlib.invalidate_caches()

    yield install
    for module in added_modules:
        sys.modules.pop(module, None)


def write_blueprint(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bp.yaml"
    path.write_text(f"extends: {TINY}\n{body}")
    return path


def test_plugin_calling_sys_exit_at_import_is_isolated_and_named(plugins, cli, tmp_path):
    plugins("exit-plugin", {"loss.quitter": "exit_plugin:Quitter"}, {"exit_plugin": "import sys\nsys.exit(3)\n"})
    result = cli("inspect", write_blueprint(tmp_path, "loss:\n  type: quitter\n"))
    assert_clean_failure(result, mentions=("exit-plugin", "sys.exit(3)", "loss.type"))
    listing = cli("components", "loss")
    assert listing.exit_code == 0, (listing.exit_code, listing.stderr)
    assert "hinge" in listing.stdout and "quitter" not in listing.stdout
    assert "broken plugin exit-plugin" in listing.stderr and "sys.exit(3)" in listing.stderr


def test_plugin_claiming_a_builtin_name_keeps_the_builtin_and_warns_once(plugins, cli):
    plugins("shadow-plugin", {"loss.hinge": "shadow_plugin:Hinge"}, {"shadow_plugin": LOSS.format(name="Hinge")})
    result = cli("inspect", TINY, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["loss"]["type"] == "hinge"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "warning" in lines[0] and "builtin" in lines[0] and "shadow-plugin" in lines[0]
    assert "shadow-plugin:hinge" in lines[0]

    from ganforge.registry import default_registry

    assert default_registry().get("loss", "hinge").origin == "builtin"


def test_plugin_version_of_a_builtin_name_is_selectable_by_qualified_name(plugins, cli, tmp_path):
    plugins("shadow-plugin", {"loss.hinge": "shadow_plugin:Hinge"}, {"shadow_plugin": LOSS.format(name="Hinge")})
    result = cli("inspect", write_blueprint(tmp_path, "loss:\n  type: shadow-plugin:hinge\n  margin: 2.0\n"),
                 "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["loss"] == {"type": "shadow-plugin:hinge", "margin": 2.0}

    from ganforge.registry import default_registry

    registry = default_registry()
    chosen = registry.get("loss", "shadow_plugin:hinge")  # the distribution name is normalised
    assert chosen.obj.__module__ == "shadow_plugin" and "shadow-plugin" in chosen.origin
    assert registry.get("loss", "hinge").origin == "builtin"
    listing = cli("components", "loss")
    assert "shadow-plugin:hinge" in listing.stdout and "plugin shadow-plugin 1.0" in listing.stdout


def test_loss_with_positional_method_arguments_is_refused_at_load(plugins, cli, tmp_path):
    plugins("posloss-plugin", {"loss.posloss": "posloss_plugin:PosLoss"}, {"posloss_plugin": POSITIONAL_LOSS})
    result = cli("inspect", write_blueprint(tmp_path, "loss:\n  type: posloss\n"))
    assert_clean_failure(result, mentions=("posloss-plugin", "loss contract", "keyword-only", "loss.type"))
    listing = cli("components", "loss")
    assert listing.exit_code == 0 and "posloss" not in listing.stdout
    assert "broken plugin posloss-plugin" in listing.stderr and "keyword-only" in listing.stderr


def test_component_without_type_hints_is_refused_at_load(plugins, cli, tmp_path):
    plugins("untyped-plugin", {"layer.untyped": "untyped_plugin:Untyped"}, {"untyped_plugin": UNTYPED_LAYER})
    blueprint = write_blueprint(tmp_path, "generator:\n  attention:\n    - {resolution: 8, type: untyped}\n")
    result = cli("inspect", blueprint)
    assert_clean_failure(result, mentions=("untyped-plugin", "layer contract", "type annotation",
                                           "generator.attention[0].type"))


class _Rule:
    def __init__(self) -> None:
        pass


class _RuleWithoutPlan(_Rule):
    def apply(self):  # the engine calls rule.apply(plan)
        pass


class _Reg:
    def __init__(self, *, gamma: float = 1.0) -> None:
        self.gamma = gamma

    def __call__(self, discriminator, real, fake):
        return 0


class _LossMissingGenerator:
    def __init__(self) -> None:
        pass

    def discriminator_loss(self, *, real_logits, fake_logits):
        return 0


class _RelativisticWithoutReal(_LossMissingGenerator):
    generator_needs_real = True

    def generator_loss(self, *, fake_logits):
        return 0


def _required_setting_layer():
    from torch import nn

    class Layer(nn.Module):
        def __init__(self, *, in_channels: int, width: int) -> None:
            super().__init__()

    return Layer


@pytest.mark.parametrize(("kind", "make", "rule"), [
    ("update_rule", lambda: _Rule, "apply"),
    ("update_rule", lambda: _RuleWithoutPlan, "plan"),
    ("regularizer", lambda: _Reg, "keyword-only"),
    ("loss", lambda: _LossMissingGenerator, "generator_loss"),
    ("loss", lambda: _RelativisticWithoutReal, "real_logits"),
    ("layer", _required_setting_layer, "needs a default"),
    ("optimizer", lambda: (lambda lr=0.1: None), "keyword-only"),
])
def test_each_kind_contract_is_checked(kind, make, rule):
    from ganforge.contracts import ContractError, check_contract

    with pytest.raises(ContractError, match=rule):
        check_contract(kind, make())


def test_builtins_follow_their_contracts():
    from ganforge.contracts import check_contract
    from ganforge.registry import BUILTIN_PACKAGES, Registry

    registry = Registry(builtin_packages=BUILTIN_PACKAGES)
    components = registry.list()
    assert len(components) > 20
    for component in components:
        check_contract(component.kind, component.obj)


def test_collision_between_plugins_blames_the_package_that_registered_second(plugins, cli, tmp_path):
    plugins("first-plugin", {"layer.twin": "first_twin:Twin"}, {"first_twin": TWIN_LAYER})
    plugins("second-plugin", {"layer.twin": "second_twin:Twin"}, {"second_twin": TWIN_LAYER})
    result = cli("inspect", write_blueprint(tmp_path, "generator:\n  attention:\n    - {resolution: 8, type: twin}\n"))
    line = assert_clean_failure(result, mentions=("second-plugin", "first-plugin", "first-plugin:twin"))
    assert line.index("second-plugin") < line.index("first-plugin"), line

    from ganforge.registry import default_registry

    broken = default_registry().broken_plugins
    assert [b.distribution for b in broken] == ["second-plugin"], broken
    registry = default_registry()
    assert registry.get("layer", "first-plugin:twin").obj.__module__ == "first_twin"
    assert registry.get("layer", "second-plugin:twin").obj.__module__ == "second_twin"
