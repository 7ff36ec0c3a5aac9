"""`bn_momentum`: every component that owns a batch norm exposes it, validated, and it is torch's momentum.

The running statistics after N training-mode steps are checked against an exponential moving average
written out here from each batch's mean and unbiased variance.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.registry import default_registry
from support import BLUEPRINTS

# (kind, name, context, input shape, takes labels)
COMPONENTS = [
    ("block", "up_resblock", {"in_channels": 3, "num_classes": 4}, (5, 3, 4, 4), True),
    ("block", "up_resblock", {"in_channels": 3, "num_classes": 0}, (5, 3, 4, 4), True),
    ("head", "image_output", {"in_channels": 3}, (5, 3, 4, 4), False),
    ("block", "dcgan_stem", {"in_features": 6}, (5, 6), False),
    ("block", "dcgan_up", {"in_channels": 3}, (5, 3, 4, 4), False),
    ("block", "dcgan_down", {"in_channels": 3, "in_size": 4}, (5, 3, 4, 4), False),
]
SMALL = {"up_resblock": {"channels": 2}, "dcgan_stem": {"channels": 2}, "dcgan_up": {"channels": 2},
         "dcgan_down": {"channels": 2}}


def _batch_norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("kind, name, context, shape, labelled", COMPONENTS,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(COMPONENTS)])
@pytest.mark.parametrize("momentum", [0.001, 0.3])
def test_running_statistics_are_the_hand_written_moving_average(kind, name, context, shape, labelled, momentum):
    torch.manual_seed(0)
    module = default_registry().get(kind, name).build({**SMALL.get(name, {}), "bn_momentum": momentum}, context)
    norms = _batch_norms(module)
    assert norms and all(bn.momentum == momentum for bn in norms)
    # The same moving average by hand: from each batch's mean and unbiased variance of the BN input.
    expected = {id(bn): [torch.zeros(bn.num_features), torch.ones(bn.num_features)] for bn in norms}

    def record(bn: nn.Module, args: tuple) -> None:
        x = args[0].detach().double()
        dims = [d for d in range(x.dim()) if d != 1]
        count = x.numel() // x.shape[1]
        mean = x.mean(dim=dims)
        var = ((x - mean.reshape(1, -1, *[1] * (x.dim() - 2))) ** 2).sum(dim=dims) / (count - 1)
        stats = expected[id(bn)]
        stats[0] = (1 - momentum) * stats[0].double() + momentum * mean
        stats[1] = (1 - momentum) * stats[1].double() + momentum * var

    handles = [bn.register_forward_pre_hook(record) for bn in norms]
    module.train()
    for _ in range(4):
        x = torch.randn(shape) * 3 + 1
        labels = torch.randint(0, 4, (shape[0],))
        module(x, labels) if labelled else module(x)
    for handle in handles:
        handle.remove()
    for bn in norms:
        torch.testing.assert_close(bn.running_mean.double(), expected[id(bn)][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var.double(), expected[id(bn)][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_momentum_outside_zero_to_one_is_a_blueprint_error(value):
    from ganforge.assembly import assemble
    from ganforge.blueprint.validation import load_blueprint

    with pytest.raises(GanforgeError, match=r"generator\.blocks\[0\]\.bn_momentum"):
        loaded = load_blueprint(BLUEPRINTS / "tiny.yaml", [f"generator.blocks.0.bn_momentum={value}"])
        assemble(loaded, default_registry())


@pytest.mark.parametrize("blueprint, blocks, head", [
    ("sagan_imagenet128", 0.001, 0.0001),  # the official code's decays 0.999 and 0.9999
    ("tiny", 0.1, 0.1),  # torch's default, set in sagan_cifar10.yaml, which tiny extends unchanged
])
def test_blueprints_set_the_momenta(blueprint, blocks, head):
    from ganforge.assembly import assemble
    from ganforge.blueprint.validation import load_blueprint

    layers = assemble(load_blueprint(BLUEPRINTS / f"{blueprint}.yaml", []), default_registry()).generator.layers
    momenta = [layer.settings["bn_momentum"] for layer in layers if "bn_momentum" in layer.settings]
    assert [layer.component for layer in layers if "bn_momentum" in layer.settings][-1] == "image_output"
    assert momenta[-1] == head
    assert len(momenta) > 1 and set(momenta[:-1]) == {blocks}
