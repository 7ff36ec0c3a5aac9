"""Blocks and heads: shapes, structure (checked with hand-written ops), meta-device builds."""

import inspect

import pytest
import torch
from torch import nn

from ganforge.components.blocks.dcgan import DCGANDown, DCGANImageOutput, DCGANLogit, DCGANStem, DCGANUp
from ganforge.components.blocks.heads import ImageOutput, ProjectionOutput
from ganforge.components.blocks.resblocks import DownResBlock, UpResBlock
from ganforge.components.blocks.stems import LinearStem
from ganforge.registry import default_registry

OWN_MODULES = ("ganforge.components.layers.", "ganforge.components.blocks.")


def _up2(x):
    """Nearest-neighbour 2× up-sampling, written out."""
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def _pool2(x):
    """2×2 average pooling, written out."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def _conv1x1(conv, x):
    return torch.einsum("oi,bihw->bohw", conv.weight.detach()[:, :, 0, 0], x) + conv.bias.detach()[None, :, None, None]


def _zero_(conv):
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()


# -- up_resblock -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        (dict(channels=8), (2, 8, 16, 16)),
        (dict(channels=16, upsample=False), (2, 16, 8, 8)),
        (dict(channels=8, conditional=False), (2, 8, 16, 16)),
    ],
)
def test_up_resblock_shapes(kwargs, shape):
    block = UpResBlock(in_channels=16, num_classes=3, **kwargs)
    assert block(torch.randn(2, 16, 8, 8), torch.tensor([0, 2])).shape == shape


def test_up_resblock_shortcut_is_upsampled_1x1_conv():
    torch.manual_seed(0)
    block = UpResBlock(in_channels=4, channels=6, spectral_norm=False)
    _zero_(block.conv2)  # residual path contributes nothing
    x = torch.randn(2, 4, 4, 4)
    torch.testing.assert_close(block(x), _conv1x1(block.shortcut, _up2(x)))


def test_up_resblock_identity_shortcut_without_resampling():
    block = UpResBlock(in_channels=6, channels=6, upsample=False, spectral_norm=False)
    assert isinstance(block.shortcut, nn.Identity)
    _zero_(block.conv2)
    x = torch.randn(2, 6, 4, 4)
    torch.testing.assert_close(block(x), x)


def test_up_resblock_residual_path_order():
    """BN → ReLU → up → conv → BN → ReLU → conv, checked with hand-written ops (train-mode BN)."""
    torch.manual_seed(1)
    block = UpResBlock(in_channels=4, channels=4, num_classes=0, spectral_norm=False)
    x = torch.randn(2, 4, 4, 4)

    def bn(t):
        mean = t.mean(dim=(0, 2, 3), keepdim=True)
        return (t - mean) / torch.sqrt(t.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + 1e-5)

    h = block.conv1(_up2(torch.relu(bn(x))))
    h = block.conv2(torch.relu(bn(h)))
    torch.testing.assert_close(block(x), h + _conv1x1(block.shortcut, _up2(x)), rtol=1e-5, atol=1e-5)


def test_up_resblock_labels():
    torch.manual_seed(2)
    block = UpResBlock(in_channels=4, channels=4, num_classes=3)
    assert block.bn1.conditional and block.bn2.conditional
    with torch.no_grad():
        block.bn1.class_gain.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 4, 4)
    block.eval()
    assert not torch.allclose(block(x, torch.tensor([0, 0])), block(x, torch.tensor([1, 1])))
    with pytest.raises(ValueError, match="labels"):
        block(x)
    plain = UpResBlock(in_channels=4, channels=4, num_classes=3, conditional=False)
    assert not plain.bn1.conditional
    plain(x)  # no labels needed


# -- down_resblock ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        (dict(channels=32), (2, 32, 4, 4)),
        (dict(channels=16, downsample=False), (2, 16, 8, 8)),
        (dict(channels=32, downsample=False), (2, 32, 8, 8)),
        (dict(channels=32, optimized=True), (2, 32, 4, 4)),
    ],
)
def test_down_resblock_shapes(kwargs, shape):
    assert DownResBlock(in_channels=16, in_size=8, **kwargs)(torch.randn(2, 16, 8, 8)).shape == shape


def test_down_resblock_shortcuts():
    torch.manual_seed(3)
    x = torch.randn(2, 4, 8, 8)
    ident = DownResBlock(in_channels=4, in_size=8, channels=4, downsample=False, spectral_norm=False)
    assert isinstance(ident.shortcut, nn.Identity)
    _zero_(ident.conv2)
    torch.testing.assert_close(ident(x), x)
    for optimized in (False, True):
        block = DownResBlock(in_channels=4, in_size=8, channels=6, optimized=optimized, spectral_norm=False)
        _zero_(block.conv2)
        torch.testing.assert_close(block(x), _conv1x1(block.shortcut, _pool2(x)), rtol=1e-5, atol=1e-6)


def test_down_resblock_leading_relu_only_when_not_optimized():
    torch.manual_seed(4)
    a, b = -torch.rand(2, 3, 8, 8) - 0.1, -torch.rand(2, 3, 8, 8) - 0.1  # all negative: ReLU(x) = 0
    block = DownResBlock(in_channels=3, in_size=8, channels=3, downsample=False, spectral_norm=False)
    torch.testing.assert_close(block(a) - a, block(b) - b)  # residual ignores x after ReLU
    opt = DownResBlock(in_channels=3, in_size=8, channels=3, optimized=True, spectral_norm=False)
    residual = lambda t: opt(t) - _conv1x1(opt.shortcut, _pool2(t))  # noqa: E731
    assert not torch.allclose(residual(a), residual(b))


def test_down_resblock_odd_size():
    with pytest.raises(ValueError, match="even"):
        DownResBlock(in_channels=3, in_size=7)
    assert DownResBlock(in_channels=3, in_size=7, downsample=False)(torch.randn(1, 3, 7, 7)).shape == (1, 64, 7, 7)


# -- stems and heads -------------------------------------------------------------------------


def test_linear_stem():
    stem = LinearStem(in_features=10, channels=8, size=4, spectral_norm=False)
    z = torch.randn(3, 10)
    out = stem(z)
    assert out.shape == (3, 8, 4, 4)
    torch.testing.assert_close(out.flatten(1), z @ stem.linear.weight.detach().T + stem.linear.bias.detach())


def test_image_output():
    head = ImageOutput(in_channels=8)
    out = head(torch.randn(2, 8, 8, 8) * 10)
    assert out.shape == (2, 3, 8, 8) and out.abs().max() <= 1


def test_projection_output_hand_computed():
    torch.manual_seed(5)
    head = ProjectionOutput(in_channels=6, num_classes=4)
    head.eval()
    x = torch.randn(3, 6, 4, 4)
    labels = torch.tensor([3, 0, 3])
    h = torch.clamp(x, min=0).sum(dim=(2, 3))
    w, bias, table = head.linear.weight.detach(), head.linear.bias.detach(), head.embedding.weight.detach()
    expected = h @ w.T + bias + (table[labels] * h).sum(1, keepdim=True)
    out = head(x, labels)
    assert out.shape == (3, 1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="labels"):
        head(x)
    for plain in (ProjectionOutput(in_channels=6, num_classes=0), ProjectionOutput(in_channels=6, num_classes=4, projection=False)):
        assert plain.embedding is None
        assert plain(x).shape == (3, 1)


# -- DCGAN -----------------------------------------------------------------------------------


def test_dcgan_shapes():
    z = torch.randn(2, 16)
    h = DCGANStem(in_features=16, channels=32)(z)
    assert h.shape == (2, 32, 4, 4)
    h = DCGANUp(in_channels=32, channels=16)(h)
    assert h.shape == (2, 16, 8, 8)
    img = DCGANImageOutput(in_channels=16)(h)
    assert img.shape == (2, 3, 16, 16) and img.abs().max() <= 1
    d = DCGANDown(in_channels=3, in_size=16, channels=8, batch_norm=False)(img)
    assert d.shape == (2, 8, 8, 8)
    d = DCGANDown(in_channels=8, in_size=8, channels=16)(d)
    assert DCGANLogit(in_channels=16, in_size=4)(d).shape == (2, 1)
    with pytest.raises(ValueError, match="even"):
        DCGANDown(in_channels=3, in_size=5)


def test_dcgan_spectral_norm_option():
    assert isinstance(DCGANUp(in_channels=4).deconv.weight, nn.Parameter)  # off by default
    torch.manual_seed(6)
    sn = DCGANUp(in_channels=4, channels=6, spectral_norm=True, sn_iterations=100)
    sn.train()
    sn(torch.randn(2, 4, 4, 4))
    sn.eval()
    # ConvTranspose weights are (in, out, k, k): normalised along the output dimension
    w = sn.deconv.weight.detach().transpose(0, 1).flatten(1)
    torch.testing.assert_close(torch.linalg.matrix_norm(w, ord=2), torch.tensor(1.0), rtol=1e-3, atol=0)


# -- the contract: every network component builds from defaults and runs on meta -------------

CONTEXT = dict(in_channels=16, in_features=16, in_size=8, num_classes=3)


def _own_network_components():
    registry = default_registry()
    out = []
    for kind in ("layer", "block", "head"):
        for comp in registry.list(kind):
            if comp.obj.__module__.startswith(OWN_MODULES):
                out.append(comp)
    return out


def _input_for(comp):
    if "in_channels" in comp.context_params:
        return torch.empty(2, CONTEXT["in_channels"], CONTEXT["in_size"], CONTEXT["in_size"])
    if "in_features" in comp.context_params:
        return torch.empty(2, CONTEXT["in_features"])
    return torch.zeros(2, dtype=torch.long)


@pytest.mark.parametrize("comp", _own_network_components(), ids=lambda c: c.name)
def test_builds_from_defaults_on_meta(comp):
    carried = {name: None for name in getattr(comp.obj, "carries", ())}  # a carrier starts its streams
    with torch.device("meta"):
        module = comp.build({}, CONTEXT)
        x = _input_for(comp)
        if "labels" in inspect.signature(module.forward).parameters:
            out = module(x, labels=torch.zeros(2, dtype=torch.long), **carried)
        else:
            out = module(x, **carried)
    if isinstance(out, dict) and carried:  # a carrier: x and its streams, all per image
        assert set(out) == {"x", *carried} and all(v.is_meta and v.shape[0] == 2 for v in out.values())
        out = out["x"]
    if isinstance(out, dict):  # a discriminator head with declared extras: every value is per image
        assert "logit" in out and set(out) - {"logit"} == set(module.outputs)
        assert all(v.is_meta and v.shape[0] == 2 for v in out.values())
        out = out["logit"]
    assert out.is_meta and out.shape[0] == 2
    assert comp.summary


def test_expected_components_registered():
    names = {(c.kind, c.name) for c in _own_network_components()}
    assert {
        ("layer", "snconv"), ("layer", "snlinear"), ("layer", "snembedding"), ("layer", "self_attention"),
        ("layer", "batch_norm"), ("layer", "cbn"), ("layer", "timm_backbone"),
        ("block", "up_resblock"), ("block", "down_resblock"), ("block", "linear_stem"),
        ("block", "dcgan_stem"), ("block", "dcgan_up"), ("block", "dcgan_down"),
        ("head", "image_output"), ("head", "projection_output"), ("head", "dcgan_image_output"), ("head", "dcgan_logit"),
    } <= names
