"""StyleGAN2 and StyleGAN2 + ADA blueprints against NVlabs/stylegan2-ada-pytorch (commit d72cc7d).

Reference parameter totals were counted by building the reference's own ``Generator`` and
``Discriminator`` (``training/networks.py``) on the CPU, outside this repository, with the settings
``train.py`` gives each configuration: z_dim = w_dim = 512, c_dim 0, channel_base fmaps·32768,
channel_max 512, num_fp16_res 4, conv_clamp 256, mapping layers ``map``, mbstd group ``mbstd``
(train.py:154-198). ``num_fp16_res`` and ``conv_clamp`` change no parameter. The generator is the
reference's default synthesis architecture 'skip' (networks.py:337): a ToRGB after every block, its
image carried beside the features (``stylegan2_torgb_skip``, ``stylegan2_skip_output``) and the ws laid
out as the reference's (``stylegan2_mapping``). The same build with architecture 'orig' (one ToRGB)
gives G 19,154,954 (cifar) and 23,512,528 (paper256), recorded for comparison.

Equalised learning rate is a run-time scale in both codes (weights stored N(0, 1), multiplied by
1/sqrt(fan_in) in the forward pass), so parameter shapes, and counts, are the reference's. The FIR
filters are buffers there and here, not parameters.

Forward equivalence, checked once outside the repository by copying the reference's weights into
ganforge's networks (eval mode, noise_mode 'const', batch 4, fp32 on CPU, random biases, noise
strengths and w_avg so that every parameter matters): ``cifar`` G max |Δ| 4.4e-6 against the
reference's non-fused modulated conv and 6.3e-6 against its default eval path (fused, grouped
conv), images of magnitude up to 5.6; with truncation ψ 0.7 4.9e-6; with style mixing at every
cutoff 1..7 5.7e-6; D max |Δ| 1.2e-7 (random images) and 6.6e-7 (generated ones); path lengths
(loss.py:81-84, gradients w.r.t. ws) equal (0.0), the ws gradients 1.6e-7. Class-conditional (c_dim
10, ``cifar``): G 5.5e-6, D 4.5e-7 and 1.4e-6; path lengths 5.8e-5, which is the reference's own fp32
error (its fp32 against an fp64 run: 5.8e-5; ganforge's: 5.9e-8). ``paper256``: G 2.3e-5
(2.5e-5 fused; 2.4e-5 mixing at every cutoff 1..13; images up to 7.1), D 3.0e-7 and 1.6e-6; path
lengths 1.9e-4, again the reference's fp32 error (its fp32 against fp64 1.9e-4, ganforge's 1.1e-5)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from support import BLUEPRINTS

from ganforge.assembly import assemble
from ganforge.blueprint.validation import load_blueprint
from ganforge.components.blocks.stylegan2 import (
    EqualizedConv2d,
    StyleGAN2Const,
    StyleGAN2DBlock,
    StyleGAN2DOutput,
    StyleGAN2Layer,
    modulated_up_conv2d,
)
from ganforge.components.blocks.stylegan2_skip import (
    StyleGAN2Mapping,
    StyleGAN2SkipOutput,
    StyleGAN2ToRGB,
    rgb_slots,
    upsample2d,
)
from ganforge.components.layers.fir import down_conv2d, fir_kernel, up_conv_transpose2d
from ganforge.components.layers.minibatch_stddev import MinibatchStdDev
from ganforge.engine.planning import plan_training
from ganforge.registry import default_registry

CIFAR, ADA, PAPER256 = "stylegan2_cifar10.yaml", "stylegan2_ada_cifar10.yaml", "stylegan2_paper256.yaml"

# name: (reference G 'skip' (the config's), reference D, reference G with architecture 'orig')
REFERENCE_PARAMS = {
    CIFAR: (19_947_539, 20_720_641, 19_154_954),      # cfg 'cifar', res 32, map 2, D 'orig'
    ADA: (19_947_539, 20_720_641, 19_154_954),        # the same networks; the augmenter has no parameters
    PAPER256: (24_767_458, 24_001_089, 23_512_528),   # cfg 'paper256', res 256, map 8, D 'resnet'
}


def resolved(name: str, *overrides: str):
    loaded = load_blueprint(BLUEPRINTS / name, list(overrides))
    registry = default_registry()
    return assemble(loaded, registry), plan_training(loaded, registry)


# ---------------------------------------------------------------------------------------------
# Parameters and settings
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(REFERENCE_PARAMS))
def test_parameter_totals_equal_the_reference_networks(name):
    assembly, _ = resolved(name)
    g_skip, d, g_orig = REFERENCE_PARAMS[name]
    assert assembly.discriminator.params == d
    assert assembly.generator.params == g_skip
    # 'skip' adds a ToRGB (affine w_dim→C, 3×C weight, 3 biases) at every resolution but the last
    widths = {CIFAR: [512] * 3, ADA: [512] * 3, PAPER256: [512] * 4 + [256, 128]}[name]
    assert g_skip - g_orig == sum(512 * c + c + 3 * c + 3 for c in widths)
    torgbs = [layer for layer in assembly.generator.layers if layer.component == "stylegan2_torgb_skip"]
    assert [layer.input_shape[0] for layer in torgbs] == widths
    assert sum(layer.params for layer in torgbs) == g_skip - g_orig


@pytest.mark.parametrize("name, g_skip, d", [(CIFAR, 20_215_315, 23_089_664), (PAPER256, 25_035_234, 26_370_112)])
def test_class_conditional_totals_equal_the_reference_networks(name, g_skip, d):
    """c_dim 10 (``--cond=1``): G's mapping embeds the label (networks.py:203-204), D maps it through
    its own 8-layer mapping network and projects (:697-698, 713-714, 663-665). Reference totals from
    the same CPU build with c_dim 10 (G 'skip'; 'orig': 19,422,730 and 23,780,304)."""
    assembly, _ = resolved(name, "data.num_classes=10")
    assert (assembly.generator.params, assembly.discriminator.params) == (g_skip, d)


def test_cifar_settings_are_the_reference_configs():
    assembly, plan = resolved(CIFAR)
    bp = assembly.loaded.blueprint
    g, d = plan.optimizers["generator"].settings, plan.optimizers["discriminator"].settings
    # lrate 0.0025, betas (0, 0.99) (train.py:160, 185-186); G's Adam scaled by 4/5 (training_loop.py:202-205)
    assert g["lr"] == pytest.approx(0.0025 * 4 / 5) and tuple(g["betas"]) == pytest.approx((0.0, 0.99 ** 0.8))
    assert d["lr"] == pytest.approx(0.0025) and tuple(d["betas"]) == (0.0, 0.99)
    assert g["eps"] == d["eps"] == 1e-8
    assert plan.d_steps == 1
    assert plan.ema_decay == pytest.approx(0.5 ** (64 / 500_000)) and plan.ema_start == 0  # ema_kimg 500
    assert (bp.train.batch_size, bp.train.steps) == (64, 100_000 * 1000 // 64)  # mb 64, kimg 100000
    (r1,) = bp.regularizers
    assert (r1.type, r1.settings["gamma"], r1.every) == ("r1", 0.01, 16)
    assert bp.loss.type == "non_saturating"
    assert bp.generator.latent.settings.get("mixing", 0.0) == 0.0  # style_mixing_prob 0 (train.py:197)
    mapping = bp.generator.context[0]
    assert mapping.type == "stylegan2_mapping"
    assert assembly.generator.context.consumers == {"style": 7, "rgb_style": 4}  # num_ws 8 (networks.py:444-454)
    assert assembly.generator.layers[-1].component == "stylegan2_skip_output"
    assert (mapping.settings["num_layers"], mapping.settings["w_dim"], bp.generator.latent_dim) == (2, 512, 512)
    blocks = [layer for layer in assembly.discriminator.layers if layer.component == "stylegan2_d_block"]
    assert {layer.settings["architecture"] for layer in blocks} == {"orig"}
    assert [layer.settings["group_size"] for layer in assembly.discriminator.layers
            if layer.component == "minibatch_stddev"] == [32]
    assert all(layer.settings.get("conv_clamp") == 256 for layer in assembly.generator.layers[1:])
    assert (bp.data.resolution, bp.data.num_classes, bp.data.settings["flip"]) == (32, 0, False)


def test_ada_adds_the_augmenter_first_and_its_controller():
    assembly, plan = resolved(ADA)
    bp = assembly.loaded.blueprint
    first = assembly.discriminator.layers[0]
    assert first.component == "ada_augment" and first.settings["initial_p"] == 0.0  # augment_p 0
    (controller,) = bp.controllers
    # ada_target 0.6 (train.py:233), ada_interval 4, ada_kimg 500 (training_loop.py:110-111)
    assert (controller.type, controller.settings["target"], controller.settings["interval"],
            controller.settings["speed_kimg"]) == ("ada", 0.6, 4, 500)
    plain, plain_plan = resolved(CIFAR)
    assert [layer.component for layer in assembly.discriminator.layers[1:]] == \
           [layer.component for layer in plain.discriminator.layers]
    assert plan.optimizers == plain_plan.optimizers and plan.ema_decay == plain_plan.ema_decay


def test_paper256_settings_are_the_reference_configs():
    assembly, plan = resolved(PAPER256)
    bp = assembly.loaded.blueprint
    for role in ("generator", "discriminator"):
        settings = plan.optimizers[role].settings
        assert settings["lr"] == pytest.approx(0.0025) and tuple(settings["betas"]) == (0.0, 0.99)
    assert plan.ema_decay == pytest.approx(0.5 ** (64 / 20_000))  # ema_kimg 20, no ramp-up
    assert (bp.train.batch_size, bp.train.steps) == (64, 25_000 * 1000 // 64)
    r1, pl = bp.regularizers
    assert (r1.type, r1.settings["gamma"], r1.every) == ("r1", 1.0, 16)
    assert (pl.type, pl.settings["weight"], pl.settings["decay"], pl.settings["batch_shrink"], pl.every) == \
           ("path_length", 2.0, 0.01, 2, 4)
    assert pl.settings["context"] == "ws"  # the gradient w.r.t. the reference's ws (B, 14, 512) (loss.py:81-84)
    assert bp.generator.latent.settings["mixing"] == 0.9
    assert bp.generator.context[0].settings["num_layers"] == 8
    # 'skip' G: 13 convs and 7 ToRGBs on the reference's num_ws 14 (networks.py:444-454, 462-466)
    assert assembly.generator.context.consumers == {"style": 13, "rgb_style": 7}
    mapping = assembly.generator.build("meta").producers[0]
    assert mapping.num_ws == 14 and mapping.rgb_slots == (1, 3, 5, 7, 9, 11, 13)
    convs = [layer for layer in assembly.generator.layers if layer.component == "stylegan2_layer"]
    assert [layer.output_shape[0] for layer in convs] == [512] * 7 + [256, 256, 128, 128, 64, 64]  # min(16384 // res, 512)
    rgbs = [layer for layer in assembly.generator.layers if "rgb_style" in layer.context]
    assert [layer.component for layer in rgbs] == ["stylegan2_torgb_skip"] * 6 + ["stylegan2_skip_output"]
    assert [layer.streams["image"][1] for layer in rgbs[:-1]] == [4, 8, 16, 32, 64, 128]
    assert assembly.generator.output_shape == (3, 256, 256)
    blocks = [layer for layer in assembly.discriminator.layers if layer.component == "stylegan2_d_block"]
    assert {layer.settings["architecture"] for layer in blocks} == {"resnet"}
    assert [layer.output_shape[0] for layer in blocks] == [128, 256, 512, 512, 512, 512]


# ---------------------------------------------------------------------------------------------
# The components against formulas written out here
# ---------------------------------------------------------------------------------------------


def _fir_1d(x: torch.Tensor, taps: list[float], dim: int) -> torch.Tensor:
    """Full 1-D convolution of every row (dim 3) or column (dim 2) with ``taps`` / sum, in a loop."""
    taps_t = torch.tensor(taps) / sum(taps)
    n = x.shape[dim]
    out = torch.zeros(*x.shape[:dim], n + len(taps) - 1, *x.shape[dim + 1:])
    for i in range(n):
        for j, t in enumerate(taps_t):
            out.narrow(dim, i + j, 1).add_(t * x.narrow(dim, i, 1))
    return out


def test_fir_kernel_is_the_normalised_outer_product():
    k = fir_kernel([1, 3, 3, 1])
    expected = torch.tensor([1.0, 3, 3, 1])[:, None] * torch.tensor([1.0, 3, 3, 1])[None] / 64
    torch.testing.assert_close(k, expected)


def test_up_conv_is_zero_insertion_then_conv_then_the_separable_filter():
    torch.manual_seed(0)
    x, w = torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3)
    ours = up_conv_transpose2d(x, w, fir_kernel([1, 3, 3, 1]))
    # By hand: zeros between pixels (2H-1), the transposed conv as a full conv with the flipped kernel,
    # then the filter ×4 as two full 1-D convolutions, cropped back to the centre 2H×2H.
    up = torch.zeros(2, 3, 9, 9)
    up[:, :, ::2, ::2] = x
    y = F.conv2d(F.pad(up, [2, 2, 2, 2]), w.flip([2, 3]))              # 11×11
    y = 4 * _fir_1d(_fir_1d(y, [1, 3, 3, 1], 2), [1, 3, 3, 1], 3)      # 14×14
    assert ours.shape == (2, 4, 10, 10)
    torch.testing.assert_close(ours, y[:, :, 2:12, 2:12], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [1, 3])
def test_down_conv_is_the_filter_then_a_strided_conv(k):
    torch.manual_seed(0)
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, k, k)
    ours = down_conv2d(x, w, fir_kernel([1, 3, 3, 1]))
    # By hand: the full 1-D filterings (11×11) cropped to the image padded by k // 2 + 1 on each side
    # before a 'valid' filter (conv2d_resample.py:100-104), then a 'valid' stride-2 conv.
    crop = 3 - (k // 2 + 1)
    blurred = _fir_1d(_fir_1d(x, [1, 3, 3, 1], 2), [1, 3, 3, 1], 3)[:, :, crop:11 - crop, crop:11 - crop]
    y = F.conv2d(blurred, w, stride=2)
    assert ours.shape == y.shape == (2, 4, 4, 4)
    torch.testing.assert_close(ours, y, rtol=1e-5, atol=1e-5)


def test_modulated_up_conv_matches_a_per_sample_modulated_weight():
    torch.manual_seed(1)
    x, w, s = torch.randn(3, 4, 4, 4), torch.randn(5, 4, 3, 3), torch.rand(3, 4) + 0.5
    kernel = fir_kernel([1, 3, 3, 1])
    expected = []
    for b in range(3):  # w' = w·s_b, demodulated per output channel (networks.py:55-60)
        wb = w * s[b][None, :, None, None]
        wb = wb / torch.sqrt(wb.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        expected.append(up_conv_transpose2d(x[b:b + 1], wb, kernel))
    torch.testing.assert_close(modulated_up_conv2d(x, w, s, kernel), torch.cat(expected), rtol=1e-5, atol=1e-5)


def test_synthesis_layer_up_is_affine_modconv_noise_bias_lrelu_clamp():
    torch.manual_seed(2)
    layer = StyleGAN2Layer(in_channels=4, in_size=4, channels=5, up=True, style_dim=6, conv_clamp=0.5).eval()
    with torch.no_grad():
        layer.bias.normal_()
        layer.noise_strength.fill_(0.3)
    x, style = torch.randn(2, 4, 4, 4), torch.randn(2, 6)
    a = layer.affine
    s = style @ (a.weight / math.sqrt(6)).T + a.bias   # FullyConnectedLayer, bias init 1
    y = modulated_up_conv2d(x, layer.weight, s, fir_kernel([1, 3, 3, 1]))
    y = y + 0.3 * layer.noise_const + layer.bias[None, :, None, None]   # const noise in eval mode
    y = (F.leaky_relu(y, 0.2) * math.sqrt(2)).clamp(-0.5, 0.5)
    out = layer(x, style=style)
    assert out.shape == (2, 5, 8, 8) and layer.noise_const.shape == (8, 8)
    torch.testing.assert_close(out, y)
    assert "resample_filter" in dict(layer.named_buffers()) and not any(
        "resample" in n for n, _ in layer.named_parameters())


def test_const_stem_ignores_z_and_learns_its_map():
    stem = StyleGAN2Const(channels=3, size=4)
    a, b = stem(torch.randn(2, 7)), stem(torch.randn(2, 7))
    assert a.shape == (2, 3, 4, 4) and torch.equal(a, b) and torch.equal(a[0], stem.const)
    a.sum().backward()
    torch.testing.assert_close(stem.const.grad, torch.full((3, 4, 4), 2.0))


def test_upsample2d_is_zero_insertion_then_the_filter_times_four():
    """upfirdn2d.upsample2d (upfirdn2d.py:337-343): zeros after every pixel, padding 2 before and 1 after,
    the filter × 4: the full 1-D filterings of the zero-inserted image, from offset 1, 2H long."""
    torch.manual_seed(7)
    x = torch.randn(2, 3, 4, 4)
    up = torch.zeros(2, 3, 8, 8)
    up[:, :, ::2, ::2] = x
    full = 4 * _fir_1d(_fir_1d(up, [1, 3, 3, 1], 2), [1, 3, 3, 1], 3)   # 11×11
    torch.testing.assert_close(upsample2d(x, fir_kernel([1, 3, 3, 1])), full[:, :, 1:9, 1:9])
    # a constant image stays constant away from the border (the filter × 4 keeps the mean)
    flat = upsample2d(torch.ones(1, 1, 6, 6), fir_kernel([1, 3, 3, 1]))
    torch.testing.assert_close(flat[:, :, 2:-2, 2:-2], torch.ones(1, 1, 8, 8))


def _torgb_by_hand(layer: StyleGAN2ToRGB, x: torch.Tensor, style: torch.Tensor, clamp: float) -> torch.Tensor:
    """ToRGBLayer (networks.py:320-324): styles = affine(w)/sqrt(C); 1×1 conv with w·s, no demodulation; + bias; clamp."""
    a = layer.affine
    s = (style @ (a.weight / math.sqrt(style.shape[1])).T + a.bias) / math.sqrt(x.shape[1])
    y = torch.einsum("oi,bihw->bohw", layer.weight[:, :, 0, 0], x * s[:, :, None, None])
    return (y + layer.bias[None, :, None, None]).clamp(-clamp, clamp)


def test_torgb_skip_adds_its_rgb_to_the_up_sampled_image():
    torch.manual_seed(8)
    layer = StyleGAN2ToRGB(in_channels=5, channels=3, rgb_style_dim=6, conv_clamp=0.8)
    with torch.no_grad():
        layer.bias.normal_()
    x, style, image = torch.randn(2, 5, 8, 8), torch.randn(2, 6), torch.randn(2, 3, 4, 4)
    rgb = _torgb_by_hand(layer, x, style, 0.8)
    out = layer(x, rgb_style=style, image=image)
    assert set(out) == {"x", "image"} and out["x"] is x  # the features pass on unchanged
    torch.testing.assert_close(out["image"], upsample2d(image, fir_kernel([1, 3, 3, 1])) + rgb)
    torch.testing.assert_close(layer(x, rgb_style=style)["image"], rgb)  # the first ToRGB starts the image
    assert layer.affine.bias.detach().eq(1).all() and layer.affine.weight.shape == (5, 6)  # bias_init 1 (:314)
    with pytest.raises(ValueError, match="up-samples the carried image"):
        layer(x, rgb_style=style, image=torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="rgb_style"):
        layer(x, image=image)


def test_skip_output_returns_the_finished_image():
    torch.manual_seed(9)
    head = StyleGAN2SkipOutput(in_channels=4, rgb_style_dim=3)
    x, style, image = torch.randn(2, 4, 8, 8), torch.randn(2, 3), torch.randn(2, 3, 4, 4)
    layer = StyleGAN2ToRGB(in_channels=4, rgb_style_dim=3)
    layer.load_state_dict(head.state_dict())
    out = head(x, rgb_style=style, image=image)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(out, layer(x, rgb_style=style, image=image)["image"])


def test_rgb_slots_are_the_references_ws_arithmetic():
    """SynthesisNetwork.forward (networks.py:462-466): block k takes num_conv + num_torgb ws from w_idx and
    advances by num_conv; so ToRGB k reads the slot after block k's last conv."""
    def reference(num_blocks: int) -> tuple[int, ...]:
        slots, w_idx = [], 0
        for k in range(num_blocks):
            num_conv = 1 if k == 0 else 2
            slots.append(w_idx + num_conv)  # the block's ws: [w_idx, w_idx + num_conv], the ToRGB's last
            w_idx += num_conv
        return tuple(slots)

    for blocks in range(1, 8):
        assert rgb_slots(2 * blocks - 1, blocks) == reference(blocks)
    assert rgb_slots(13, 1) == (13,)  # 'orig': one ToRGB, after the last conv
    assert rgb_slots(2, 2) == (0, 2)  # not a StyleGAN2 layout: clamped, still defined


def test_stylegan2_mapping_slices_the_references_ws():
    torch.manual_seed(10)
    mapping = StyleGAN2Mapping(latent_dim=4, consumers={"style": 7, "rgb_style": 4}, w_dim=3, num_layers=2).eval()
    z, z2 = torch.randn(5, 4), torch.randn(5, 4)
    out = mapping(z=z)
    ws = out["ws"]
    assert ws.shape == (5, 8, 3) and mapping.num_ws == 8  # cifar: 7 convs + 1 (networks.py:444-454)
    torch.testing.assert_close(ws, out["w"][:, None].expand(5, 8, 3))
    torch.testing.assert_close(out["style"], ws[:, :7])
    torch.testing.assert_close(out["rgb_style"], ws[:, [1, 3, 5, 7]])
    w, w2 = mapping.map(z), mapping.map(z2)
    for cut in range(1, 8):  # loss.py:43-45: ws[:, cut:] from the second latent, cut uniform in [1, num_ws)
        u = torch.full((5,), (cut - 1 + 0.5) / 7)
        mixed = mapping(z=z, mix_z=z2, mix_cutoff=u)
        expected = torch.cat([w[:, None].expand(5, cut, 3), w2[:, None].expand(5, 8 - cut, 3)], dim=1)
        torch.testing.assert_close(mixed["ws"], expected)
        torch.testing.assert_close(mixed["rgb_style"], expected[:, [1, 3, 5, 7]])
    truncated = mapping(z=z, truncation_psi=0.5)["ws"]
    torch.testing.assert_close(truncated, mapping.w_avg.lerp(ws, 0.5))
    # the gradient w.r.t. ws collects both entries' (path length differentiates through ws)
    out = mapping(z=z)
    (grad,) = torch.autograd.grad(out["style"].sum() + 10 * out["rgb_style"].sum(), out["ws"])
    assert grad[0, :, 0].tolist() == [1.0, 11.0, 1.0, 11.0, 1.0, 11.0, 1.0, 10.0]


def test_equalised_conv_scales_its_unit_weight_at_run_time():
    torch.manual_seed(3)
    conv = EqualizedConv2d(in_channels=6, channels=4, kernel_size=3, conv_clamp=1.0)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 6, 5, 5)
    y = F.conv2d(x, conv.weight / math.sqrt(6 * 9), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), (F.leaky_relu(y, 0.2) * math.sqrt(2)).clamp(-1, 1))
    # gain scales the output and the clamp (Conv2dLayer.forward(x, gain), networks.py:166-168)
    torch.testing.assert_close(conv.run(x, gain=0.5), (F.leaky_relu(y, 0.2) * math.sqrt(2) * 0.5).clamp(-0.5, 0.5))
    assert isinstance(conv.weight, torch.nn.Parameter) and not isinstance(conv, torch.nn.Conv2d)


def test_resnet_block_sums_both_branches_at_sqrt_half():
    torch.manual_seed(4)
    block = StyleGAN2DBlock(in_channels=4, in_size=8, channels=6, architecture="resnet", conv_clamp=256)
    x = torch.randn(2, 4, 8, 8)
    kernel = fir_kernel([1, 3, 3, 1])
    h = block.conv0(x)
    main = F.leaky_relu(down_conv2d(h, block.conv1.weight / math.sqrt(4 * 9), kernel)
                        + block.conv1.bias[None, :, None, None], 0.2) * math.sqrt(2)
    skip = down_conv2d(x, block.skip.weight / 2.0, kernel)   # 1×1, fan-in 4, no bias
    torch.testing.assert_close(block(x), math.sqrt(0.5) * (main + skip))
    assert block.skip.bias is None
    orig = StyleGAN2DBlock(in_channels=4, in_size=8, channels=6, architecture="orig")
    assert orig.skip is None and orig(x).shape == (2, 6, 4, 4)


def test_minibatch_stddev_is_the_references_strided_groups():
    """MinibatchStdLayer (networks.py:588-610): group g holds images g, g + N/G, g + 2N/G, ...; the
    population std over the group, + 1e-8 inside the root, averaged over each of F channel slices."""
    torch.manual_seed(5)
    n, group, f = 8, 4, 2
    x = torch.randn(n, 6, 3, 3)
    out = MinibatchStdDev(in_channels=6, group_size=group, num_channels=f)(x)
    stride = n // group
    for i in range(n):
        members = x[i % stride::stride]                                   # the images of i's group
        std = (members.var(dim=0, unbiased=False) + 1e-8).sqrt()          # (6, 3, 3)
        for slot in range(f):
            expected = std[slot * 3:(slot + 1) * 3].mean()
            torch.testing.assert_close(out[i, 6 + slot], expected.expand(3, 3))
    torch.testing.assert_close(out[:, :6], x)


def test_d_output_projects_onto_the_label_mapping():
    torch.manual_seed(6)
    head = StyleGAN2DOutput(in_channels=4, in_size=2, num_classes=3, mapping_layers=2)
    assert head.cmap_dim == 4 and head.out.weight.shape == (4, 4)
    x, labels = torch.randn(5, 4, 2, 2), torch.tensor([0, 1, 2, 1, 0])
    h = head.out(head.fc(x.flatten(1)))
    e = head.embed(F.one_hot(labels, 3).float())
    cmap = head.mapping(e * (e.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt())
    torch.testing.assert_close(head(x, labels), (h * cmap).sum(dim=1, keepdim=True) / 2.0)
    plain = StyleGAN2DOutput(in_channels=4, in_size=2)
    assert plain(x).shape == (5, 1) and plain.embed is None


# ---------------------------------------------------------------------------------------------
# Two training steps at a tiny width, and a restore
# ---------------------------------------------------------------------------------------------


def _narrow(name: str) -> list[str]:
    """Overrides for a CPU run: width 8, z and w 16, procedural data, batch 4 (resolution kept)."""
    loaded = load_blueprint(BLUEPRINTS / name)
    bp = loaded.blueprint
    out = ["generator.latent_dim=16", "generator.context.0.w_dim=16", "generator.stem.channels=8",
           f"data={{type: procedural, resolution: {bp.data.resolution}, num_classes: 0, size: 16}}",
           "train.batch_size=4", "train.num_workers=0", "train.precision=fp32", "train.checkpoint_every=2",
           "train.log_every=1", "train.sample_every=1000"]
    out += [f"generator.blocks.{i}.channels=8" for i, b in enumerate(bp.generator.blocks)
            if "channels" in b.settings and b.type != "stylegan2_torgb_skip"]  # the ToRGBs keep 3
    if bp.discriminator.stem.type == "stylegan2_conv":
        out.append("discriminator.stem.channels=8")
    else:
        out.append("discriminator.stem.initial_p=0.5")  # ADA: let the augmenter act from the start
    out += [f"discriminator.blocks.{i}.channels=8" for i, b in enumerate(bp.discriminator.blocks)
            if "channels" in b.settings]
    return out


@pytest.mark.parametrize("name", [CIFAR, ADA])
def test_two_cpu_steps_change_the_weights_and_restore(tmp_path, name):
    _two_steps(tmp_path, name, _narrow(name))


def test_paper256_two_cpu_steps_with_path_length_and_mixing(tmp_path):
    """At its own 256² resolution and structure, width 8: lazy R1 and path length both fire at step 0."""
    _two_steps(tmp_path, PAPER256, _narrow(PAPER256))


def _two_steps(tmp_path, name, overrides):
    from ganforge.engine.build import build_trainer
    from ganforge.engine.distributed import place_process
    from ganforge.engine.restore import restore

    t = build_trainer(str(BLUEPRINTS / name), overrides=overrides, placement=place_process("cpu"), out=tmp_path)
    g, d = t.update.generator, t.update.discriminator
    before = {k: v.clone() for k, v in {**{"g." + k: v for k, v in g.state_dict().items()},
                                        **{"d." + k: v for k, v in d.state_dict().items()}}.items()}
    losses = [t.train_step() for _ in range(2)]
    assert all(torch.isfinite(dl) and torch.isfinite(gl) for dl, gl in losses), losses
    after = {**{"g." + k: v for k, v in g.state_dict().items()}, **{"d." + k: v for k, v in d.state_dict().items()}}
    first_conv = "d.layers.0.weight" if "d.layers.0.weight" in after else "d.layers.1.weight"  # ADA: layer 1
    for key in ("g.layers.0.const", "g.layers.1.affine.weight", "g.layers.2.affine.weight", "g.layers.3.weight",
                f"g.layers.{len(g.layers) - 1}.weight", "g.producers.0.layers.0.weight",
                first_conv, "d.layers.2.conv1.weight"):
        assert not torch.equal(before[key], after[key]), key
    t.run_dir.root.mkdir(parents=True, exist_ok=True)
    t.checkpoint()
    restored = restore(tmp_path, warn=lambda message: None)
    assert restored.step == 2 and restored.uses_ema
    ema = t.update.ema.state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in restored.generator.state_dict().items())
    with torch.no_grad():
        images = restored.generator(torch.randn(2, 16))
    res = restored.loaded.blueprint.data.resolution
    assert images.shape == (2, 3, res, res) and torch.isfinite(images).all()
