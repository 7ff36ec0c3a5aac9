"""One conformance test over every registered component, the example plugin's included.

Network components build from defaults, run forward and backward on a small input, and give
finite outputs of exactly the shape the assembler infers on the meta device.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import torch

from ganforge.plugins import PluginIndex
from ganforge.registry import NETWORK_KINDS, Component, Registry, default_registry
from ganforge.training.update_rules import OptimizerChoice, TrainingPlan
from support import ROOT

EXAMPLE = ROOT / "plugins" / "ganforge-example"
NUM_CLASSES = 3


def example_plugin_registry() -> Registry:
    if str(EXAMPLE / "src") not in sys.path:
        sys.path.insert(0, str(EXAMPLE / "src"))
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    eps = [metadata.EntryPoint(name=n, value=v, group="ganforge.plugins")
           for n, v in project["entry-points"]["ganforge.plugins"].items()]
    return Registry(plugin_source=PluginIndex.from_entry_points(eps))


def all_components() -> list[Component]:
    components = list(default_registry().list())
    components += example_plugin_registry().list()
    return components


COMPONENTS = all_components()


def by_kind(*kinds: str) -> list:
    return [pytest.param(c, id=f"{c.kind}.{c.name}") for c in COMPONENTS if c.kind in kinds]


def example_input(component: Component, device: str) -> tuple[torch.Tensor, dict]:
    needs = component.context_params
    with torch.device(device):
        if needs & {"in_channels", "in_size"}:
            x = torch.randn(4, 16, 8, 8)
            context = {"in_channels": 16, "in_size": 8}
        elif "in_features" in needs:
            x = torch.randn(4, 16)
            context = {"in_features": 16}
        else:
            x = torch.randint(0, NUM_CLASSES, (4,))
            context = {}
    context["num_classes"] = NUM_CLASSES
    return x, context


@pytest.mark.parametrize("component", by_kind(*NETWORK_KINDS))
def test_network_component_builds_runs_and_matches_inferred_shape(component: Component):
    from ganforge.assembly import takes_labels

    x_meta, context = example_input(component, "meta")
    with torch.device("meta"):
        probe = component.build({}, context)
        labels_meta = torch.zeros(4, dtype=torch.long)
        inferred = (probe(x_meta, labels_meta) if takes_labels(probe) else probe(x_meta)).shape

    torch.manual_seed(0)
    module = component.build({}, context)
    module.train()
    x, _ = example_input(component, "cpu")
    labels = torch.randint(0, NUM_CLASSES, (4,))
    if x.is_floating_point():
        x.requires_grad_(True)
    out = module(x, labels) if takes_labels(module) else module(x)
    assert out.shape == inferred
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("component", by_kind("loss"))
def test_loss_component(component: Component):
    loss = component.build({})
    real = torch.randn(8, 1, requires_grad=True)
    fake = torch.randn(8, 1, requires_grad=True)
    d = loss.discriminator_loss(real_logits=real, fake_logits=fake)
    extra = {"real_logits": real} if getattr(loss, "generator_needs_real", False) else {}
    g = loss.generator_loss(fake_logits=fake, **extra)
    assert d.ndim == 0 and g.ndim == 0 and torch.isfinite(d) and torch.isfinite(g)
    (d + g).backward()
    assert torch.isfinite(fake.grad).all()


@pytest.mark.parametrize("component", by_kind("regularizer"))
def test_regularizer_component(component: Component):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
    penalty = component.build({})(discriminator=net, real=torch.randn(4, 3, 2, 2), fake=torch.randn(4, 3, 2, 2))
    assert penalty.ndim == 0 and torch.isfinite(penalty)
    penalty.backward()
    assert net[1].weight.grad is not None


@pytest.mark.parametrize("component", by_kind("init"))
def test_init_component(component: Component):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(16, 2))
    component.build({})(net)
    assert all(torch.isfinite(p).all() for p in net.parameters())


@pytest.mark.parametrize("component", by_kind("update_rule"))
def test_update_rule_component(component: Component):
    choice = lambda: OptimizerChoice(name="adam", settings={"lr": 2e-4, "betas": (0.5, 0.999)})  # noqa: E731
    plan = TrainingPlan(optimizers={"generator": choice(), "discriminator": choice()})
    component.build({}).apply(plan)
    assert plan.d_steps >= 1


@pytest.mark.parametrize("component", by_kind("optimizer"))
def test_optimizer_component(component: Component):
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = component.build({})([param])
    param.sum().backward()
    optimizer.step()
    assert not torch.equal(param.detach(), torch.ones(3))


def test_example_plugin_components_are_covered():
    names = {c.name for c in COMPONENTS}
    assert {"coord_conv", "relativistic_hinge"} <= names
