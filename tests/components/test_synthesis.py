"""StyleGAN2's synthesis layer (``style_conv``) and ToRGB (``style_rgb``) against per-sample loops and
formulas written out here (from NVlabs/stylegan2-ada-pytorch training/networks.py), and a tiny
StyleGAN-shaped blueprint assembled, trained two steps and sampled with w-space truncation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from support import TINY

from ganforge.components.blocks.synthesis import StyleConv, StyleToRGB, modulated_conv2d
from ganforge.registry import default_registry

B, CIN, COUT, SIZE, STYLE = 3, 4, 5, 6, 7


def _conv(**settings) -> StyleConv:
    torch.manual_seed(0)
    kwargs = {"in_channels": CIN, "in_size": SIZE, "channels": COUT, "style_dim": STYLE}
    kwargs.update(settings)
    layer = StyleConv(**kwargs)
    with torch.no_grad():  # nonzero bias and affine bias away from 1, so both are checked
        layer.bias.normal_()
        if layer.affine is not None:
            layer.affine.bias.add_(0.3 * torch.randn_like(layer.affine.bias))
    return layer


def _affine(layer, style: torch.Tensor) -> torch.Tensor:
    """FullyConnectedLayer, lr multiplier 1: style·(A/√style_dim)ᵀ + b."""
    a = layer.affine
    return style @ (a.weight / math.sqrt(a.weight.shape[1])).T + a.bias


def _by_hand(x, weight, styles, *, demodulate=True, padding=1):
    """For each sample b: w' = w·s_b (per input channel); w'' = w' / sqrt(Σ_{in,k,k} w'² + 1e-8); conv."""
    out = []
    for b in range(x.shape[0]):
        w = weight * styles[b][None, :, None, None]
        if demodulate:
            w = w / torch.sqrt(w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        out.append(F.conv2d(x[b : b + 1], w, padding=padding))
    return torch.cat(out)


def test_modulated_conv_with_demodulation_matches_a_per_sample_loop():
    torch.manual_seed(1)
    x, weight, styles = torch.randn(B, CIN, 6, 6), torch.randn(COUT, CIN, 3, 3), torch.randn(B, CIN)
    torch.testing.assert_close(modulated_conv2d(x, weight, styles, padding=1), _by_hand(x, weight, styles),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(modulated_conv2d(x, weight, styles, demodulate=False, padding=1),
                               _by_hand(x, weight, styles, demodulate=False), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("up", [False, True])
def test_style_conv_is_affine_then_modulated_conv_then_bias_and_lrelu(up):
    layer = _conv(up=up, noise=False).train()
    x, style = torch.randn(B, CIN, SIZE, SIZE), torch.randn(B, STYLE)
    inputs = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False) if up else x
    pre = _by_hand(inputs, layer.weight, _affine(layer, style)) + layer.bias[None, :, None, None]
    expected = F.leaky_relu(pre, 0.2) * math.sqrt(2)  # bias_act lrelu: slope 0.2, gain √2
    out = layer(x, style=style)
    assert out.shape == (B, COUT, SIZE * (2 if up else 1), SIZE * (2 if up else 1))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_linear_activation_clamp_and_no_demodulation():
    layer = _conv(noise=False, activation="linear", demodulate=False, conv_clamp=0.5)
    x, style = torch.randn(B, CIN, SIZE, SIZE), torch.randn(B, STYLE)
    gain = 1 / math.sqrt(CIN * 9)  # ToRGB's weight gain, folded into the styles
    pre = _by_hand(x, layer.weight, _affine(layer, style) * gain, demodulate=False) + layer.bias[None, :, None, None]
    torch.testing.assert_close(layer(x, style=style), pre.clamp(-0.5, 0.5), rtol=1e-5, atol=1e-5)


def test_demodulation_gives_unit_output_statistics_for_unit_inputs():
    torch.manual_seed(2)
    x, weight, styles = torch.randn(64, 32, 12, 12), torch.randn(16, 32, 3, 3), torch.rand(64, 32) * 3
    out = modulated_conv2d(x, weight, styles, padding=1)[:, :, 1:-1, 1:-1]  # away from the zero padding
    assert out.std(dim=[0, 2, 3]).sub(1).abs().max() < 0.05


def test_noise_strength_starts_at_zero_so_the_layer_starts_noise_free():
    torch.manual_seed(3)
    noisy = StyleConv(in_channels=CIN, in_size=SIZE, channels=COUT, style_dim=STYLE).train()
    plain = StyleConv(in_channels=CIN, in_size=SIZE, channels=COUT, style_dim=STYLE, noise=False)
    plain.load_state_dict({k: v for k, v in noisy.state_dict().items() if not k.startswith("noise")})
    assert noisy.noise_strength.item() == 0
    x, style = torch.randn(B, CIN, SIZE, SIZE), torch.randn(B, STYLE)
    torch.testing.assert_close(noisy(x, style=style), plain(x, style=style), rtol=0, atol=0)


def test_noise_is_random_in_training_and_the_const_plane_in_eval():
    layer = _conv(activation="linear")
    with torch.no_grad():
        layer.noise_strength.fill_(0.5)
    x, style = torch.randn(B, CIN, SIZE, SIZE), torch.randn(B, STYLE)
    layer.train()
    assert not torch.equal(layer(x, style=style), layer(x, style=style))
    layer.eval()
    first, second = layer(x, style=style), layer(x, style=style)
    assert torch.equal(first, second)
    expected = (_by_hand(x, layer.weight, _affine(layer, style)) + 0.5 * layer.noise_const
                + layer.bias[None, :, None, None])  # one plane for every image and channel
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-5)
    assert layer.noise_const.shape == (SIZE, SIZE) and "noise_const" in layer.state_dict()
    assert _conv(up=True).noise_const.shape == (2 * SIZE, 2 * SIZE)


def test_gradient_reaches_the_style():
    layer = _conv().train()
    style = torch.randn(B, STYLE, requires_grad=True)
    layer(torch.randn(B, CIN, SIZE, SIZE), style=style).square().mean().backward()
    assert style.grad is not None and style.grad.abs().sum() > 0


def test_parameter_counts_and_affine_init():
    k = 3
    conv = StyleConv(in_channels=CIN, in_size=SIZE, channels=COUT, style_dim=STYLE)
    # weight, bias, affine weight + bias, noise strength
    assert sum(p.numel() for p in conv.parameters()) == COUT * CIN * k * k + COUT + STYLE * CIN + CIN + 1
    assert torch.equal(conv.affine.bias, torch.ones(CIN))  # bias_init=1
    plain = StyleConv(in_channels=CIN, in_size=SIZE, noise=False)
    assert sum(p.numel() for p in plain.parameters()) == CIN * CIN * k * k + CIN
    rgb = StyleToRGB(in_channels=CIN, style_dim=STYLE)
    assert sum(p.numel() for p in rgb.parameters()) == 3 * CIN + 3 + STYLE * CIN + CIN
    assert torch.equal(rgb.affine.bias, torch.ones(CIN))


def test_style_rgb_is_a_per_sample_scaled_1x1_conv_without_demodulation():
    torch.manual_seed(4)
    rgb = StyleToRGB(in_channels=CIN, style_dim=STYLE, conv_clamp=2.0)
    with torch.no_grad():
        rgb.bias.normal_()
    x, style = torch.randn(B, CIN, SIZE, SIZE), torch.randn(B, STYLE)
    s = _affine(rgb, style) / math.sqrt(CIN)  # weight_gain 1/sqrt(in_channels · 1²)
    expected = torch.cat([F.conv2d(x[b : b + 1] * s[b][None, :, None, None], rgb.weight, rgb.bias)
                          for b in range(B)]).clamp(-2, 2)
    torch.testing.assert_close(rgb(x, style=style), expected, rtol=1e-5, atol=1e-5)


def test_without_style_dim_the_layer_is_a_plain_demodulated_conv():
    layer = StyleConv(in_channels=CIN, in_size=SIZE, channels=COUT, noise=False, activation="linear")
    x = torch.randn(B, CIN, SIZE, SIZE)
    w = layer.weight / torch.sqrt(layer.weight.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
    torch.testing.assert_close(layer(x), F.conv2d(x, w, layer.bias, padding=1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="style_dim 0"):
        layer(x, style=torch.randn(B, STYLE))


def test_a_missing_or_wrong_style_is_refused_by_name():
    layer, rgb = _conv(), StyleToRGB(in_channels=CIN, style_dim=STYLE)
    x = torch.randn(B, CIN, SIZE, SIZE)
    for module in (layer, rgb):
        with pytest.raises(ValueError, match="'style'"):
            module(x)
        with pytest.raises(ValueError, match=rf"\(B, {STYLE}\)"):
            module(x, style=torch.randn(B, STYLE + 1))
    with pytest.raises(ValueError, match="odd kernel_size"):
        StyleConv(in_channels=CIN, in_size=SIZE, kernel_size=2)


def test_both_build_and_run_on_the_meta_device():
    registry = default_registry()
    conv, rgb = registry.find("style_conv", ["block"]), registry.find("style_rgb", ["head"])
    with torch.device("meta"):
        layer = conv.build({"up": True, "channels": 8}, {"in_channels": CIN, "in_size": SIZE, "style_dim": STYLE})
        head = rgb.build({}, {"in_channels": 8, "style_dim": STYLE})
        for mode in (True, False):
            layer.train(mode)
            out = head(layer(torch.empty(B, CIN, SIZE, SIZE), style=torch.empty(B, STYLE)),
                       style=torch.empty(B, STYLE))
            assert out.is_meta and out.shape == (B, 3, 2 * SIZE, 2 * SIZE)


# -- end to end: a tiny StyleGAN-shaped blueprint ------------------------------------------------

BLUEPRINT = f"""
extends: {TINY}
name: tiny_style
generator:
  context: [{{type: style_mapping, w_dim: 16, num_layers: 2}}]
  latent: {{type: normal, mixing: 0.9}}
  stem: {{type: linear_stem, channels: 16, size: 4, spectral_norm: false}}
  blocks:
    - {{type: style_conv, channels: 16, up: true}}   # 8×8
    - {{type: style_conv, channels: 8, up: true}}    # 16×16
  attention: []
  head: {{type: style_rgb}}
regularizers: [{{type: path_length, every: 2}}]
"""
OVERRIDES = ["generator.defaults={}", "train.batch_size=4", "data.size=32", "train.num_workers=0",
             "train.log_every=1000", "train.sample_every=1000", "train.checkpoint_every=1000"]


@pytest.fixture(scope="module")
def blueprint(tmp_path_factory):
    path = tmp_path_factory.mktemp("blueprint") / "tiny_style.yaml"
    path.write_text(BLUEPRINT)
    return path


def test_the_assembler_gives_every_style_consumer_style_dim_and_its_slot(blueprint):
    from ganforge.assembly import assemble
    from ganforge.blueprint.validation import load_blueprint

    plan = assemble(load_blueprint(blueprint, OVERRIDES)).generator
    assert [layer.component for layer in plan.layers] == ["linear_stem", "style_conv", "style_conv", "style_rgb"]
    assert [layer.context for layer in plan.layers] == [{}, {"style": 0}, {"style": 1}, {"style": 2}]
    assert plan.context.consumers == {"style": 3}
    network = plan.build()
    assert [getattr(m, "style_dim", None) for m in network.layers] == [None, 16, 16, 16]
    assert all(m.affine.weight.shape == (m.in_channels, 16) for m in network.layers[1:])


def test_a_tiny_style_gan_trains_and_psi_zero_collapses_to_w_avg(blueprint, tmp_path):
    from ganforge.engine.build import build_trainer
    from ganforge.engine.distributed import Placement
    from ganforge.sampling.generation import generate

    trainer = build_trainer(blueprint, placement=Placement(device=torch.device("cpu")), out=tmp_path / "run",
                            overrides=OVERRIDES)
    for _ in range(2):
        losses = trainer.train_step()
        assert all(torch.isfinite(loss).all() for loss in losses)
    (path_length,) = [r.regularizer for r in trainer.update.regularizers]
    assert path_length.state_dict()["pl_mean"] > 0  # it ran at step 0 (every 2), through the styles

    generator = trainer.update.generator  # no EMA in this blueprint
    assert trainer.update.ema is None
    generator.eval()  # eval: the const noise planes, no w_avg update
    with torch.no_grad():
        generator.layers[0].linear.weight.zero_()  # the stem reads z; make it constant so only the styles could vary

        def images(seed: int, psi: float | None) -> torch.Tensor:
            return torch.cat(list(generate(generator, n=4, latent_dim=32, num_classes=4, seed=seed,
                                           truncation_psi=psi)))

        assert not torch.allclose(images(0, None), images(1, None))  # the styles do depend on z
        collapsed = images(0, 0.0)
        torch.testing.assert_close(collapsed, images(1, 0.0), rtol=0, atol=0)
        mapping = generator.producers[0]
        assert torch.isfinite(mapping.w_avg).all() and mapping.w_avg.abs().sum() > 0
