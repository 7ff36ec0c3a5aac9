"""Init schemes: statistics of the original weights, untouched norms, accurate σ after init."""

import math

import pytest
import torch
from torch import nn

from ganforge.components.blocks.dcgan import DCGANUp
from ganforge.components.blocks.heads import ProjectionOutput
from ganforge.components.blocks.resblocks import UpResBlock
from ganforge.components.layers.attention import SelfAttention
from ganforge.components.layers.init_schemes import KEEP_INIT_ATTR, default, normal, orthogonal, xavier
from ganforge.components.layers.spectral_norm import SNConv2d, SNLinear, spectral_norm_modules
from ganforge.registry import default_registry


def _original(module):
    return module.parametrizations.weight.original if hasattr(module, "parametrizations") else module.weight


def _network():
    torch.manual_seed(0)
    net = nn.Sequential(
        SNConv2d(in_channels=16, channels=8),  # (8, 144) matrix
        UpResBlock(in_channels=8, channels=8, num_classes=3),
        SelfAttention(in_channels=8, in_size=8),
        ProjectionOutput(in_channels=8, num_classes=3),
        DCGANUp(in_channels=8, channels=4, spectral_norm=True),
        nn.BatchNorm2d(8),
    )
    with torch.no_grad():  # non-default values that init schemes must leave alone
        net[1].bn1.class_gain.uniform_(0.5, 1.5)
        net[1].bn1.class_bias.normal_()
        net[2].gamma.fill_(0.3)
        net[5].weight.fill_(1.5)
        net[5].bias.fill_(-0.5)
    return net


def _protected(net):
    return {
        "class_gain": net[1].bn1.class_gain.detach().clone(),
        "class_bias": net[1].bn1.class_bias.detach().clone(),
        "gamma": net[2].gamma.detach().clone(),
        "bn_weight": net[5].weight.detach().clone(),
        "bn_bias": net[5].bias.detach().clone(),
    }


SCHEMES = [orthogonal(), orthogonal(gain=2.0), xavier(), normal(), default()]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_norms_tables_and_gamma_untouched(scheme):
    net = _network()
    before = _protected(net)
    scheme(net)
    after = _protected(net)
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_orthogonal_rows_are_orthonormal_and_biases_zero():
    net = _network()
    orthogonal(gain=1.0)(net)
    conv = net[0].conv
    w = _original(conv).detach().flatten(1)
    torch.testing.assert_close(w @ w.T, torch.eye(8), atol=1e-5, rtol=0)
    assert torch.equal(conv.bias, torch.zeros(8))
    lin = net[3].linear  # (1, 8): a unit row
    assert _original(lin).detach().norm().item() == pytest.approx(1.0, rel=1e-5)
    assert lin.bias.item() == 0.0


@pytest.mark.parametrize("scheme", [orthogonal(gain=3.0), xavier(), normal(std=0.5)])
def test_sigma_exact_after_init(scheme):
    """From step one the normalised weights have spectral norm 1 (checked with torch.linalg)."""
    net = _network()
    scheme(net)
    net.eval()
    n_sn = 0
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding, nn.ConvTranspose2d)) and hasattr(module, "parametrizations"):
            w = module.weight.detach()
            mat = w.transpose(0, 1).flatten(1) if isinstance(module, nn.ConvTranspose2d) else w.flatten(1)
            torch.testing.assert_close(torch.linalg.matrix_norm(mat, ord=2), torch.tensor(1.0), rtol=1e-4, atol=0)
            n_sn += 1
    assert n_sn == len(list(spectral_norm_modules(net))) >= 10


def test_xavier_bounds():
    lin = SNLinear(in_features=64, features=32)
    xavier(gain=1.0)(lin)
    w = _original(lin.linear).detach()
    bound = math.sqrt(6 / (64 + 32))
    assert w.abs().max() <= bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_normal_std():
    lin = nn.Linear(256, 256)
    normal(std=0.02)(lin)
    assert lin.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert lin.weight.mean().abs().item() < 0.001
    assert torch.equal(lin.bias, torch.zeros(256))


def test_default_changes_nothing():
    net = _network()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    default()(net)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_keep_init_marker_is_respected():
    net = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4)))
    setattr(net[1], KEEP_INIT_ATTR, True)
    kept = net[1][0].weight.detach().clone()
    normal(std=5.0)(net)
    assert torch.equal(net[1][0].weight, kept)
    assert net[0].weight.std() > 1


def test_registered_factories():
    registry = default_registry()
    for name in ("orthogonal", "xavier", "normal", "default"):
        apply = registry.get("init", name).build({})
        assert callable(apply)
    apply = registry.get("init", "orthogonal").build({"gain": 0.5})
    lin = nn.Linear(3, 3)
    apply(lin)
    torch.testing.assert_close(lin.weight @ lin.weight.T, 0.25 * torch.eye(3), atol=1e-6, rtol=0)


def test_meta_network_is_skipped():
    with torch.device("meta"):
        net = nn.Sequential(SNConv2d(in_channels=3, channels=4), nn.Linear(4, 4))
    orthogonal()(net)  # nothing to initialise, must not fail
