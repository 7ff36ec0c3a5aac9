"""What the engine's contracts refuse, up front and in one line, and the corners a review found.

Each case was once a traceback at the first step, a silent no-op, or a wrong resume.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from support import assert_clean_failure
from test_engine_contracts import SMALL, STYLED, custom, steps, trainer  # noqa: F401  (fixture)


class DeclaresButReturnsTensor(nn.Module):
    outputs = ("class_logits",)

    def __init__(self, *, in_channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels, 1)

    def forward(self, x):
        return self.linear(x.sum(dim=(2, 3)))


class DictLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()

    def forward(self, x):
        return {"logit": x}


class TwoTags(nn.Module):
    provides = {"cue": "shared"}
    parameter_tags = frozenset({"ta", "tb"})

    def __init__(self, *, num_classes: int) -> None:
        super().__init__()
        self.table = nn.Embedding(max(num_classes, 1), 3)

    def forward(self, *, labels):
        return {"cue": self.table(labels)}


class NeedsCue(nn.Module):
    provides = {"echo": "shared"}

    def __init__(self, *, cue_dim: int = 0) -> None:
        super().__init__()
        self.cue_dim = cue_dim

    def forward(self, *, cue):
        return {"echo": cue}


@dataclasses.dataclass(kw_only=True)
class Unhashable:
    """A dataclass regulariser: instances are unhashable, which must not matter."""

    weight: float = 0.0

    def __call__(self, *, real):
        return real.sum() * self.weight


@pytest.fixture
def faults(custom):  # noqa: F811
    custom.add("head", "test_declares", DeclaresButReturnsTensor, origin="test")
    custom.add("layer", "test_dict_layer", DictLayer, origin="test")
    custom.add("context", "test_two_tags", TwoTags, origin="test")
    custom.add("context", "test_needs_cue", NeedsCue, origin="test")
    custom.add("regularizer", "test_unhashable", Unhashable, origin="test")
    return custom


def refused(registry, *overrides, blueprint=SMALL, match: str, key: str) -> None:
    from ganforge.engine.build import build_run
    from ganforge.errors import BlueprintError

    with pytest.raises(BlueprintError, match=match) as caught:
        build_run(str(blueprint), overrides=list(overrides), registry=registry)
    assert caught.value.path == key


def test_a_head_declaring_extras_must_return_them(faults):
    refused(faults, "discriminator.head={type: test_declares}", "loss=acgan", match="declares the outputs",
            key="discriminator.head")


def test_only_a_head_returns_named_outputs(faults):
    refused(faults, "discriminator.blocks=[{type: test_dict_layer}, {type: down_resblock, channels: 8}]",
            match="only a discriminator head", key="discriminator.blocks[0]")


def test_a_parameter_in_two_configured_groups_is_refused(faults):
    refused(faults, "generator.context=[{type: test_two_tags}]",
            "optimizers.generator.groups={ta: {lr_multiplier: 0.5}, tb: {lr_multiplier: 0.1}}",
            match="carries the tags 'ta' and 'tb'", key="optimizers.generator.groups.tb")


def test_path_length_without_styles_is_refused_at_assembly(cli, tmp_path):
    result = cli("inspect", SMALL, "--set", "regularizers=[path_length]")
    assert_clean_failure(result, mentions=("path_length", "'style'", "regularizers[0]"))


def test_a_producer_entry_size_set_by_hand_is_refused(faults):
    refused(faults, "generator.context=[{type: test_two_tags}, {type: test_needs_cue, cue_dim: 5}]",
            match="cue_dim is the size", key="generator.context[1].cue_dim")


def test_mixing_draws_nothing_reads_are_refused(cli):
    result = cli("inspect", SMALL, "--set", "generator.latent={type: normal, mixing: 0.5}")
    assert_clean_failure(result, mentions=("mix_cutoff, mix_z", "generator.latent"))


def test_a_controller_twice_or_controlling_nothing_is_refused(faults):
    refused(faults, "controllers=[ada]", match="no module of either network requires controller 'ada'",
            key="controllers[0]")
    ada_d = ("discriminator.blocks=[{type: ada_augment}, {type: down_resblock, channels: 8, optimized: true}, "
             "{type: down_resblock, channels: 8}]")
    refused(faults, ada_d, "controllers=[ada, ada]", match="listed twice", key="controllers[1]")


def test_an_unhashable_regulariser_trains(faults, tmp_path):
    steps(trainer(tmp_path / "run", "regularizers=[test_unhashable]", registry=faults), 1)


def test_the_generator_regulariser_pass_runs_the_uncompiled_network(faults, tmp_path):
    """Under torch.compile the views are compiled graphs, which neither return the context they
    differentiated through nor support double backward: path length must use the network itself."""
    t = trainer(tmp_path / "run", "regularizers=[path_length]", blueprint=STYLED, registry=faults)
    update = t.update

    class Refuses(nn.Module):
        def forward(self, *args, **kwargs):
            raise AssertionError("the regulariser's pass went through a view")

    update.g.plain = update.g.update = Refuses()
    fresh = update._generate_with_context(2)
    (grad,) = torch.autograd.grad(fresh.images.sum(), fresh.context["style"])
    assert grad.shape[0] == 2 and torch.isfinite(grad).all()


def test_component_state_is_kept_per_process(faults, tmp_path):
    """Each process resumes from its own rank's state; with another world size, from the first one's (said)."""
    from ganforge.errors import GanforgeError

    t = trainer(tmp_path / "run", "regularizers=[path_length]", blueprint=STYLED, registry=faults)
    path_length = t.update.regularizers[0].regularizer
    path_length.pl_mean = torch.tensor(3.0)
    record = t.state(components_by_rank=[{"regularizers[0]": {"pl_mean": 1.0}},
                                         {"regularizers[0]": {"pl_mean": 2.0}}])
    assert [state["regularizers[0]"]["pl_mean"] for state in record.components] == [1.0, 2.0]
    said: list[str] = []
    t.report = said.append
    t._load_component_state(tmp_path / "ck.pt", record.components)  # one process now: the first one's state
    assert float(path_length.pl_mean) == 1.0 and "2 process(es)" in said[0]
    t.placement = dataclasses.replace(t.placement, rank=1, world_size=2)
    t._load_component_state(tmp_path / "ck.pt", record.components)
    assert float(path_length.pl_mean) == 2.0
    with pytest.raises(GanforgeError, match=r"no state for regularizers\[0\] \(PathLength\)"):
        t._load_component_state(tmp_path / "ck.pt", [{}, {}])
