"""The zoo: every family blueprint scaled to 16×16 procedural data with one budget (blueprints/zoo/).

Each ``blueprints/zoo/<family>_16.yaml`` extends ``../<family>.yaml`` and is a smoke version, not the
reference: the README's zoo study trains them all with one budget (batch 16, 300 steps) and scores
them with ``procedural_pr``. They live in a subfolder so that the reference-blueprint tests (which glob
``blueprints/*.yaml``) leave them out. Here: each assembles to a 16×16 generator on the zoo's data and
budget, and keeps its parent's loss, regularisers, controllers, update rules and optimisers (types
and settings), except the settings its header says were rescaled for 300 steps (EMA, LeCam start,
ADA speed, the linear learning-rate decay's end); an unconditional parent stays unconditional.
"""

from __future__ import annotations

import pytest
import torch

from ganforge.assembly import assemble
from ganforge.blueprint.validation import load_blueprint
from support import BLUEPRINTS

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

ZOO = BLUEPRINTS / "zoo"
FAMILIES = ["biggan_cifar10", "diffaugment_biggan_cifar10", "lecam_biggan_cifar10",
            "lecam_diffaugment_biggan_cifar10", "stylegan2_cifar10", "stylegan2_ada_cifar10", "sngan_cifar10",
            "wgan_gp_cifar10", "lsgan_cifar10", "acgan_cifar10", "contragan_cifar10", "sagan_cifar10"]
DATA = {"type": "procedural", "resolution": 16, "channels": 3, "size": 2048, "seed": 0}
ZOO_EMA = {"decay": 0.955, "start": 0}
# Settings a zoo blueprint rescales for 300 steps (each header says why); everything else is the parent's.
RESCALED = {("update_rule", "ema"): {"decay", "start"}, ("update_rule", "lr_schedule"): {"decay_end"},
            ("regularizer", "lecam"): {"start"}, ("controller", "ada"): {"speed_kimg"}}


def loaded(family: str, *overrides: str):
    return load_blueprint(ZOO / f"{family}_16.yaml", list(overrides))


def parent(family: str):
    return load_blueprint(BLUEPRINTS / f"{family}.yaml")


def specs(bp, kind: str) -> list[tuple[str, dict]]:
    items = {"regularizer": bp.regularizers, "controller": bp.controllers, "update_rule": bp.update_rule}[kind]
    return [(spec.type, dict(spec.settings)) for spec in items]


def test_the_zoo_is_the_family_list():
    assert sorted(p.name for p in ZOO.glob("*.yaml")) == sorted(f"{family}_16.yaml" for family in FAMILIES)
    for family in FAMILIES:
        text = (ZOO / f"{family}_16.yaml").read_text()
        assert f"../{family}.yaml" in text.split("extends:", 1)[1].splitlines()[0]
        assert text.startswith(f"# Zoo smoke version of ../{family}.yaml")  # not the reference: the header says so


@pytest.mark.parametrize("family", FAMILIES)
def test_zoo_blueprint_assembles_at_16_on_the_zoo_budget(cli, family):
    result = cli("inspect", ZOO / f"{family}_16.yaml")
    assert result.exit_code == 0, result.stderr
    zoo, base = loaded(family), parent(family)
    assembly = assemble(zoo)
    assert assembly.generator.output_shape == (3, 16, 16)
    bp = zoo.blueprint
    assert bp.data.type == "procedural"
    assert {key: getattr(bp.data, key, None) if key in ("type", "resolution", "channels")
            else bp.data.component_settings()[key] for key in DATA} == DATA
    # conditional parents get the 4 classes; unconditional ones stay unconditional (next test)
    assert bp.data.num_classes == (4 if base.blueprint.data.num_classes else bp.data.num_classes)
    assert bp.data.num_classes in (0, 4)
    assert (bp.train.batch_size, bp.train.steps, bp.train.precision) == (16, 300, "fp32")


@pytest.mark.parametrize("family", FAMILIES)
def test_zoo_blueprint_keeps_its_familys_training(family):
    zoo, base = loaded(family).blueprint, parent(family).blueprint
    assert (zoo.loss.type, dict(zoo.loss.settings)) == (base.loss.type, dict(base.loss.settings))
    for role in ("generator", "discriminator"):
        assert getattr(zoo.optimizers, role) == getattr(base.optimizers, role)
    for kind in ("regularizer", "controller", "update_rule"):
        mine, theirs = specs(zoo, kind), specs(base, kind)
        assert [t for t, _ in mine] == [t for t, _ in theirs], kind
        for (name, settings), (_, reference) in zip(mine, theirs):
            rescaled = RESCALED.get((kind, name), set())
            assert {k: v for k, v in settings.items() if k not in rescaled} == \
                   {k: v for k, v in reference.items() if k not in rescaled}, (kind, name)
            if name == "ema":
                assert settings == ZOO_EMA
            if name == "lr_schedule" and reference.get("decay_end") == base.train.steps:
                assert settings["decay_end"] == zoo.train.steps  # decay over the whole run, as the parent
    # the regulariser's laziness (`every`) is part of the family
    assert [getattr(r, "every", None) for r in zoo.regularizers] == [getattr(r, "every", None) for r in base.regularizers]
    # the discriminator's augmentation stem (DiffAugment, ADA), if any, is the parent's
    base_stem, zoo_stem = base.discriminator.stem, zoo.discriminator.stem
    if base_stem is not None and base_stem.type in ("diff_augment", "ada_augment"):
        assert (zoo_stem.type, dict(zoo_stem.settings)) == (base_stem.type, dict(base_stem.settings))


def component_types(network) -> list[str]:
    return sorted({layer.component for layer in network.layers})


@pytest.mark.parametrize("family", FAMILIES)
def test_zoo_networks_are_built_from_the_parents_components(family):
    zoo, base = assemble(loaded(family)), assemble(parent(family))
    assert component_types(zoo.generator) == component_types(base.generator)
    assert component_types(zoo.discriminator) == component_types(base.discriminator)
    assert bool(zoo.generator.attention) == bool(base.generator.attention)
    assert bool(zoo.discriminator.attention) == bool(base.discriminator.attention)
    assert zoo.generator.params < base.generator.params and zoo.discriminator.params < base.discriminator.params


UNCONDITIONAL_ON_CLASSES = [f for f in FAMILIES if not parent(f).blueprint.data.num_classes
                            and loaded(f).blueprint.data.num_classes]


@pytest.mark.parametrize("family", UNCONDITIONAL_ON_CLASSES)
def test_an_unconditional_family_ignores_the_zoo_datas_labels(family):
    """Unconditional parents trained on the 4-class data: no class parameters, outputs independent of labels."""
    with_classes, without = assemble(loaded(family)), assemble(loaded(family, "data.num_classes=0"))
    assert (with_classes.generator.params, with_classes.discriminator.params) == \
           (without.generator.params, without.discriminator.params)
    torch.manual_seed(0)
    generator, discriminator = with_classes.generator.build().eval(), with_classes.discriminator.build().eval()
    z = torch.randn(4, loaded(family).blueprint.generator.latent_dim)
    zeros, threes = torch.zeros(4, dtype=torch.long), torch.full((4,), 3)
    with torch.no_grad():
        image = generator(z, zeros)
        assert torch.equal(image, generator(z, threes))
        assert torch.equal(discriminator(image, zeros), discriminator(image, threes))


def test_the_unconditional_families_on_classes_are_the_expected_ones():
    assert sorted(UNCONDITIONAL_ON_CLASSES) == ["lsgan_cifar10", "sngan_cifar10", "wgan_gp_cifar10"]
