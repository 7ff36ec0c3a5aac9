"""StyleGAN2's mapping network as a context producer: the mapping, w_avg, truncation and style mixing
against formulas written out here (from NVlabs/stylegan2-ada-pytorch training/networks.py, loss.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

from ganforge.components.blocks.style import EqualizedLinear, StyleMapping
from ganforge.contracts import check_contract
from ganforge.registry import default_registry

N_STYLES = 5
BETA = 0.995


def _mapping(**settings) -> StyleMapping:
    torch.manual_seed(0)
    kwargs = {"latent_dim": 4, "consumers": {"style": N_STYLES}, "w_dim": 3, "num_layers": 2}
    kwargs.update(settings)
    return StyleMapping(**kwargs)


def _by_hand(mapping: StyleMapping, z: torch.Tensor) -> torch.Tensor:
    """normalize_2nd_moment, then per layer lrelu(x·(W·lr/√fan_in)ᵀ + b·lr, 0.2)·√2."""
    x = z / torch.sqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
    lr = 0.01
    for layer in mapping.layers:
        fan_in = layer.weight.shape[1]
        x = F.leaky_relu(x @ (layer.weight * (lr / math.sqrt(fan_in))).T + layer.bias * lr, 0.2) * math.sqrt(2)
    return x


def test_mapping_matches_the_reference_formula():
    mapping = _mapping().eval()
    with torch.no_grad():
        for layer in mapping.layers:
            layer.bias.normal_()  # nonzero biases, so their gain is checked too
    z = torch.randn(6, 4)
    out = mapping(z=z)
    w = _by_hand(mapping, z)
    assert torch.allclose(out["w"], w, atol=1e-6)
    assert out["style"].shape == (6, N_STYLES, 3)
    assert torch.equal(out["style"], out["w"].unsqueeze(1).expand(6, N_STYLES, 3))  # one w per consumer


def test_equalised_learning_rate_storage():
    torch.manual_seed(0)
    layer = EqualizedLinear(in_features=256, out_features=256, lr_multiplier=0.01)
    assert layer.weight.std().item() == pytest.approx(100.0, rel=0.02)  # randn / lr_multiplier
    assert layer.weight_gain == pytest.approx(0.01 / 16) and layer.bias_gain == 0.01
    x = torch.randn(512, 256)
    assert layer(x).std().item() == pytest.approx(1.0, rel=0.05)  # unit-variance init at run time


def test_w_avg_follows_the_reference_lerp_in_training_and_not_in_eval():
    mapping = _mapping().train()
    z1, z2 = torch.randn(6, 4), torch.randn(6, 4)
    w1 = mapping(z=z1)["w"].detach()
    expected = (1 - BETA) * w1.mean(0)  # from w_avg = 0: lerp(mean w, 0, β)
    assert torch.allclose(mapping.w_avg, expected, atol=1e-7)
    w2 = mapping(z=z2)["w"].detach()
    expected = w2.mean(0) + BETA * (expected - w2.mean(0))
    assert torch.allclose(mapping.w_avg, expected, atol=1e-7)
    mapping.eval()
    before = mapping.w_avg.clone()
    mapping(z=torch.randn(6, 4))
    assert torch.equal(mapping.w_avg, before)


def _trained_w_avg(mapping: StyleMapping) -> StyleMapping:
    mapping.train()
    for _ in range(3):
        mapping(z=torch.randn(8, 4))
    return mapping.eval()


def test_truncation():
    mapping = _trained_w_avg(_mapping())
    z = torch.randn(6, 4)
    plain = mapping(z=z)
    assert not torch.allclose(plain["w"], mapping.w_avg.expand(6, 3))
    zero = mapping(z=z, truncation_psi=0.0)
    assert torch.allclose(zero["style"], mapping.w_avg.expand(6, N_STYLES, 3))
    assert torch.allclose(zero["w"], mapping.w_avg.expand(6, 3))
    one = mapping(z=z, truncation_psi=1.0)
    assert torch.equal(one["style"], plain["style"]) and torch.equal(one["w"], plain["w"])
    half = mapping(z=z, truncation_psi=0.5)
    assert torch.allclose(half["w"], mapping.w_avg + 0.5 * (plain["w"] - mapping.w_avg), atol=1e-6)


def test_truncation_cutoff_truncates_the_first_layers_only():
    mapping = _trained_w_avg(_mapping(truncation_cutoff=2))
    z = torch.randn(6, 4)
    plain, zero = mapping(z=z)["style"], mapping(z=z, truncation_psi=0.0)["style"]
    assert torch.allclose(zero[:, :2], mapping.w_avg.expand(6, 2, 3))
    assert torch.equal(zero[:, 2:], plain[:, 2:])


@pytest.mark.parametrize(("u", "cutoff"), [(0.0, 1), (0.3, 2), (0.5, 3), (0.99, 4), (1.0, 5), (3.0, 5)])
def test_style_mixing_replaces_exactly_the_layers_from_the_cutoff(u, cutoff):
    # c = 1 + floor(u·(n−1)) with n = 5; u ≥ 1 means no mixing (c = n)
    mapping = _mapping().eval()
    z, mix_z = torch.randn(6, 4), torch.randn(6, 4)
    w, w_mix = _by_hand(mapping, z), _by_hand(mapping, mix_z)
    out = mapping(z=z, mix_z=mix_z, mix_cutoff=torch.full((6,), u))
    styles = out["style"]
    for layer in range(N_STYLES):
        assert torch.allclose(styles[:, layer], w if layer < cutoff else w_mix, atol=1e-6), layer
    assert torch.allclose(out["w"], w, atol=1e-6)  # w stays the main latent's


def test_style_mixing_uses_the_first_cutoff_for_the_whole_batch():
    mapping = _mapping().eval()
    z, mix_z = torch.randn(3, 4), torch.randn(3, 4)
    out = mapping(z=z, mix_z=mix_z, mix_cutoff=torch.tensor([0.5, 0.0, 2.0]))["style"]
    expected = mapping(z=z, mix_z=mix_z, mix_cutoff=torch.full((3,), 0.5))["style"]
    assert torch.equal(out, expected)


def test_mixing_latent_does_not_move_w_avg():
    a, b = _mapping().train(), _mapping().train()
    z = torch.randn(6, 4)
    a(z=z)
    b(z=z, mix_z=torch.randn(6, 4), mix_cutoff=torch.full((6,), 0.5))
    assert torch.equal(a.w_avg, b.w_avg)


def test_class_conditional_mapping():
    mapping = _mapping(num_classes=3).eval()
    z = torch.randn(1, 4).expand(3, 4)
    w = mapping(z=z, labels=torch.tensor([0, 1, 2]))["w"]
    assert mapping.layers[0].weight.shape == (3, 4 + 3)  # z concatenated with a w_dim-wide embedding
    assert not torch.allclose(w[0], w[1]) and not torch.allclose(w[1], w[2])
    with pytest.raises(ValueError, match="needs labels"):
        mapping(z=z)


def test_gradients_reach_z_and_every_mapping_parameter():
    mapping = _mapping().train()
    z = torch.randn(6, 4, requires_grad=True)
    out = mapping(z=z, mix_z=torch.randn(6, 4), mix_cutoff=torch.full((6,), 0.5))
    out["style"].square().sum().backward()
    assert z.grad is not None and all(p.grad is not None for p in mapping.parameters())


def test_runs_in_fp32_under_autocast():
    mapping = _mapping().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mapping(z=torch.randn(6, 4), truncation_psi=0.7)
    assert out["style"].dtype == torch.float32 and out["w"].dtype == torch.float32


def test_registered_as_a_context_producer():
    component = default_registry().get("context", "style_mapping")
    assert component.obj is StyleMapping
    check_contract("context", StyleMapping)
    assert StyleMapping.provides == {"style": "per_layer", "w": "shared"}
    assert StyleMapping.parameter_tags == frozenset({"mapping"})
    built = component.build({"w_dim": 8, "num_layers": 2},
                            {"latent_dim": 4, "num_classes": 0, "consumers": {"style": 3}})
    assert built(z=torch.randn(2, 4))["style"].shape == (2, 3, 8)
