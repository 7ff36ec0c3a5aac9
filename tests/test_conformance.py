"""One conformance test over every registered component, the example plugin's included.

Every component follows its kind's contract (``ganforge.contracts``: settings, interface, the
types of the capabilities it declares), before and after it is built. Network components build
from defaults, run forward and backward on a small input, and give finite outputs of exactly the
shape the assembler infers on the meta device.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import torch

from ganforge.contracts import KIND_TABLE, NETWORK_KINDS, capability, check_contract, check_instance
from ganforge.plugins import PluginIndex
from ganforge.registry import Component, Registry, default_registry
from ganforge.engine.planning import OptimizerChoice, TrainingPlan
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
    check_instance(component.kind, module)
    for sub in module.modules():  # capabilities are read on every module of a network, at any depth
        check_instance(component.kind, sub)
    out = module(x, labels) if takes_labels(module) else module(x)
    assert out.shape == inferred
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if x.is_floating_point():  # gradients reach the input too (parameter-free layers included)
        assert x.grad is not None and torch.isfinite(x.grad).all()
    else:
        assert grads


@pytest.mark.parametrize("component", by_kind("loss"))
def test_loss_component(component: Component):
    loss = component.build({})
    real = torch.randn(8, 1, requires_grad=True)
    fake = torch.randn(8, 1, requires_grad=True)
    d = loss.discriminator_loss(real_logits=real, fake_logits=fake)
    check_instance("loss", loss)
    extra = {"real_logits": real} if capability(loss, "generator_needs_real", kind="loss") else {}
    g = loss.generator_loss(fake_logits=fake, **extra)
    assert d.ndim == 0 and g.ndim == 0 and torch.isfinite(d) and torch.isfinite(g)
    (d + g).backward()
    assert torch.isfinite(fake.grad).all()


@pytest.mark.parametrize("component", by_kind("regularizer"))
def test_regularizer_component(component: Component):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
    regularizer = component.build({})
    check_instance("regularizer", regularizer)
    penalty = regularizer(discriminator=net, real=torch.randn(4, 3, 2, 2), fake=torch.randn(4, 3, 2, 2))
    assert penalty.ndim == 0 and torch.isfinite(penalty)
    penalty.backward()
    assert net[1].weight.grad is not None


@pytest.mark.parametrize("component", by_kind("init"))
def test_init_component(component: Component):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(16, 2))
    init = component.build({})
    check_instance("init", init)
    init(net)
    assert all(torch.isfinite(p).all() for p in net.parameters())


@pytest.mark.parametrize("component", by_kind("update_rule"))
def test_update_rule_component(component: Component):
    choice = lambda: OptimizerChoice(name="adam", settings={"lr": 2e-4, "betas": (0.5, 0.999)})  # noqa: E731
    plan = TrainingPlan(optimizers={"generator": choice(), "discriminator": choice()})
    rule = component.build({})
    check_instance("update_rule", rule)
    rule.apply(plan)
    assert plan.d_steps >= 1


@pytest.mark.parametrize("component", by_kind("optimizer"))
def test_optimizer_component(component: Component):
    param = torch.nn.Parameter(torch.ones(3))
    factory = component.build({})
    check_instance("optimizer", factory)
    optimizer = factory([param])
    assert isinstance(optimizer, torch.optim.Optimizer)
    param.sum().backward()
    optimizer.step()
    assert not torch.equal(param.detach(), torch.ones(3))


def test_example_plugin_components_are_covered():
    names = {c.name for c in COMPONENTS}
    assert {"coord_conv", "relativistic_hinge"} <= names


def test_every_registered_kind_has_a_declared_contract():
    kinds = {c.kind for c in COMPONENTS}
    assert kinds <= KIND_TABLE.keys()
    for kind in KIND_TABLE.values():
        for name, cap in kind.capabilities.items():
            assert cap.name == name and cap.doc


@pytest.mark.parametrize("component", by_kind(*KIND_TABLE))
def test_component_follows_its_kind_contract(component: Component):
    check_contract(component.kind, component.obj)


@pytest.mark.parametrize("component", by_kind("metric"))
def test_metric_component(component: Component):
    metric = component.build({})
    check_instance("metric", metric)
    assert isinstance(metric.name, str) and metric.name
    for name in ("needs_real", "needs_logits", "needs_labels", "needs_inception_features", "needs_full_features"):
        assert isinstance(capability(metric, name, kind="metric"), bool)


def test_a_metric_that_needs_labels_must_take_them():
    from ganforge.contracts import ContractError

    class Counts:
        name = "counts"
        needs_labels = True

        def compute(self, *, real, fake, fake_logits=None, real_stats=None):
            return {}

    with pytest.raises(ContractError, match="needs_labels = True but its compute.. takes no fake_labels"):
        check_instance("metric", Counts())

    class Takes(Counts):
        def compute(self, *, real, fake, fake_logits=None, real_stats=None, fake_labels=None):
            return {}

    check_instance("metric", Takes())


def test_capability_reads_declared_flags_only():
    class Loss:
        generator_needs_real = True

    assert capability(Loss(), "generator_needs_real") is True
    assert capability(object(), "generator_needs_real", kind="loss") is False
    assert capability(torch.nn.Linear(2, 2), "logged_scalars", kind="layer") is None
    with pytest.raises(ValueError, match="not a declared capability"):
        capability(Loss(), "generator_needs_fake")
    with pytest.raises(ValueError, match="not a declared capability of kind 'metric'"):
        capability(Loss(), "generator_needs_real", kind="metric")


def test_a_mistyped_capability_is_refused():
    from ganforge.contracts import ContractError

    class Loss:
        generator_needs_real = "yes"

        def discriminator_loss(self, *, real_logits, fake_logits): ...

        def generator_loss(self, *, fake_logits, real_logits): ...

    with pytest.raises(ContractError, match="generator_needs_real must be bool"):
        check_instance("loss", Loss())


def test_one_attention_rule_for_plans_and_figures():
    from ganforge.commands.attention_maps import find_attention_layers
    from ganforge.contracts import is_attention
    from ganforge.components.layers.attention import SelfAttention

    layer = SelfAttention(in_channels=16, in_size=8)
    assert is_attention(layer) and not is_attention(torch.nn.Conv2d(1, 1, 1))
    assert [found.module for found in find_attention_layers(torch.nn.Sequential(layer))] == [layer]
