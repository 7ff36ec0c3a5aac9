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

from ganforge.blueprint.validation import Resolved
from ganforge.contracts import KIND_TABLE, NETWORK_KINDS, REGULARIZER_NEEDS, capability, check_contract, check_instance
from ganforge.engine.calls import Lazy, adapt_loss, call_with
from ganforge.assembly import tagged_parameters
from ganforge.records import DiscriminatorOutput, GeneratorPass, LabelPair
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
    for entry in component.entry_dims(ENTRY_SIZES):  # the conditioning entries it consumes, at a test size
        context[f"{entry}_dim"] = ENTRY_SIZES[entry]
    return x, context


ENTRY_SIZES = {"z_chunk": 5, "class_embedding": 6, "style": 8, "w": 8, "code": 7}
"""Conditioning entries a network component may consume in this test, by per-image size."""


def entry_inputs(component: Component, device: str) -> dict:
    """The entries it consumes, and None for each stream it carries (a carrier must start a stream)."""
    with torch.device(device):
        given = {entry: torch.randn(4, ENTRY_SIZES[entry]) for entry in component.entry_dims(ENTRY_SIZES)}
    return {**given, **{name: None for name in capability(component.obj, "carries", kind="layer")}}


def logit_of(out):
    """A head's output as the engine reads it (a record for heads with extras), and the tensor to check;
    a carrier's {"x": ..., stream: ...} gives x, its streams summed into the record's place."""
    if isinstance(out, dict) and "x" in out:
        return out["x"], DiscriminatorOutput(logit=out["x"], extras={k: v for k, v in out.items() if k != "x"})
    record = DiscriminatorOutput.of(out) if isinstance(out, dict) else None
    return (record.logit if record is not None else out), record


@pytest.mark.parametrize("component", by_kind(*NETWORK_KINDS))
def test_network_component_builds_runs_and_matches_inferred_shape(component: Component):
    from ganforge.assembly import takes_labels

    x_meta, context = example_input(component, "meta")
    with torch.device("meta"):
        probe = component.build({}, context)
        labels_meta = torch.zeros(4, dtype=torch.long)
        extra = entry_inputs(component, "meta")
        inferred = logit_of(probe(x_meta, labels_meta, **extra) if takes_labels(probe)
                            else probe(x_meta, **extra))[0].shape

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
    extra = entry_inputs(component, "cpu")
    out, record = logit_of(module(x, labels, **extra) if takes_labels(module) else module(x, **extra))
    assert out.shape == inferred
    assert torch.isfinite(out).all()
    if record is not None:  # a head with extras (or a carrier with its streams) returns exactly what it declares
        declared = capability(module, "outputs", kind="head") or capability(module, "carries", kind="layer")
        assert set(record.extras) == set(declared)
        out = out.sum() + sum(v.float().sum() for v in record.extras.values())
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
    check_instance("loss", loss)
    needed = capability(loss, "needs_outputs", kind="loss")
    # every extra the loss reads, as a head would give it (class logits over 3 classes, features...)
    extras = {name: torch.randn(8, 3, requires_grad=True) for name in needed}
    labels = LabelPair(real=torch.randint(0, 3, (8,)), fake=torch.randint(0, 3, (8,)))
    real_out = DiscriminatorOutput.of({"logit": real, **extras})
    fake_out = DiscriminatorOutput.of({"logit": fake, **extras})
    called = adapt_loss(Resolved(component=component, settings=component.validate({}), path="loss"))
    d = called.discriminator_loss(real=real_out, fake=fake_out, labels=labels)
    g = called.generator_loss(fake=fake_out, real=real_out, labels=labels)
    assert d.ndim == 0 and g.ndim == 0 and torch.isfinite(d) and torch.isfinite(g)
    (d + g).backward()
    assert torch.isfinite(fake.grad).all()


@pytest.mark.parametrize("component", by_kind("regularizer"))
def test_regularizer_component(component: Component):
    """Every regulariser runs on what the engine offers its network (``REGULARIZER_NEEDS``), and its
    penalty reaches that network's weights."""
    regularizer = component.build({})
    check_instance("regularizer", regularizer)
    network = capability(regularizer, "network", kind="regularizer")
    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
    g = torch.nn.Linear(8, 12)

    def generate(n: int) -> GeneratorPass:
        style = torch.randn(n, 1, 8).expand(n, 2, 8).requires_grad_(True)
        return GeneratorPass(images=g(style.mean(1)).view(n, 3, 2, 2), context={"style": style, "w": style[:, 0]})

    labels = LabelPair(real=torch.randint(0, 3, (4,)), fake=torch.randint(0, 3, (4,)))
    available = {"step": 0, "labels": labels, "rng": torch.Generator().manual_seed(0),
                 "parameters": Lazy(lambda: tagged_parameters(d if network == "discriminator" else g))}
    if network == "discriminator":
        real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
        available.update(discriminator=d, discriminator_outputs=lambda x: DiscriminatorOutput.of(d(x)),
                         real=real, fake=fake, real_outputs=DiscriminatorOutput.of(d(real)),
                         fake_outputs=DiscriminatorOutput.of(d(fake)))
    else:
        available.update(fake=generate(4).images, generate=generate)
    assert set(available) == REGULARIZER_NEEDS[network]  # the test offers exactly what the engine does
    penalty = call_with(regularizer, available)
    assert penalty.ndim == 0 and torch.isfinite(penalty)
    penalty.backward()
    assert (d[1] if network == "discriminator" else g).weight.grad is not None


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
    names = {f"{c.kind}.{c.name}" for c in COMPONENTS}
    assert {"layer.coord_conv", "loss.relativistic_hinge", "head.feature_output", "loss.hinge_feature_matching",
            "regularizer.image_mean", "controller.logit_tracker", "layer.instance_noise", "context.layer_codes",
            "layer.film"} <= names


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
    for name in ("needs_real", "needs_logits", "needs_labels", "needs_real_labels", "needs_inception_features",
                 "needs_full_features"):
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


@pytest.mark.parametrize("component", by_kind("latent"))
def test_latent_component(component: Component):
    """A latent draws z of (n, latent_dim) from the generator it is given: the same seed, the same draws."""
    latent = component.build({}, {"latent_dim": 6})
    check_instance("latent", latent)
    first = latent.draw(5, generator=torch.Generator().manual_seed(3), device="cpu")
    again = latent.draw(5, generator=torch.Generator().manual_seed(3), device="cpu")
    assert first["z"].shape == (5, 6) and torch.isfinite(first["z"]).all()
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert all(v.shape[0] == 5 for v in first.values())  # every draw is per image (micro-batches split it)
    with torch.device("meta"):  # assembly probes the draws on the meta device
        assert latent.draw(2, generator=None, device="meta")["z"].is_meta


@pytest.mark.parametrize("component", by_kind("context"))
def test_context_producer_component(component: Component):
    """A producer builds from defaults, returns exactly the entries it declares, at the declared layout."""
    from ganforge.assembly import keyword_inputs

    provides = dict(component.obj.provides)
    consumers = {entry: 2 for entry, how in provides.items() if how == "per_layer"}
    latent_dim = 12
    module = component.build({}, {"latent_dim": latent_dim, "num_classes": NUM_CLASSES, "consumers": consumers,
                                  **{f"{e}_dim": ENTRY_SIZES[e] for e in ENTRY_SIZES}})
    check_instance("context", module)
    available = {"z": torch.randn(4, latent_dim, requires_grad=True), "labels": torch.randint(0, NUM_CLASSES, (4,)),
                 "truncation_psi": None, **{e: torch.randn(4, size) for e, size in ENTRY_SIZES.items()}}
    out = module(**{name: available[name] for name in keyword_inputs(module) if name in available})
    assert isinstance(out, dict) and set(out) <= set(provides) and out
    for entry, value in out.items():
        assert value.shape[0] == 4 and torch.isfinite(value).all()
        if provides[entry] == "per_layer":
            assert value.ndim == 3 and value.shape[1] == consumers[entry]


@pytest.mark.parametrize("component", by_kind("controller"))
def test_controller_component(component: Component):
    """A controller attaches to nothing or to its modules, takes feedback, and its state round-trips."""
    controller = component.build({})
    check_instance("controller", controller)
    controller.attach(modules=[])
    real = DiscriminatorOutput.of(torch.randn(8, 1))
    for step in range(5):
        call_with(controller.feedback, {"step": step, "losses": {"discriminator": torch.tensor(1.0)}, "real": real})
    state = controller.state_dict()
    fresh = component.build({})
    fresh.attach(modules=[])
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state


def test_a_metric_that_needs_reference_classes_must_take_them():
    from ganforge.contracts import ContractError

    class PerClass:
        name = "per_class"
        needs_real = True
        needs_real_labels = True

        def compute(self, *, real, fake, fake_logits=None, real_stats=None):
            return {}

    with pytest.raises(ContractError, match="needs_real_labels = True but its compute.. takes no real_labels"):
        check_instance("metric", PerClass())

    class Takes(PerClass):
        def compute(self, *, real, fake, fake_logits=None, real_stats=None, real_labels=None):
            return {}

    check_instance("metric", Takes())
