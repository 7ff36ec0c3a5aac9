"""StyleGAN2 and StyleGAN2 + ADA blueprints against NVlabs/stylegan2-ada-pytorch (commit d72cc7d).

Reference parameter totals were counted by building the reference's own ``Generator`` and
``Discriminator`` (``training/networks.py``) on the CPU, outside this repository, with the settings
``train.py`` gives each configuration: z_dim = w_dim = 512, c_dim 0, channel_base fmaps·32768,
channel_max 512, num_fp16_res 4, conv_clamp 256, mapping layers ``map``, mbstd group ``mbstd``
(train.py:154-198). ``num_fp16_res`` and ``conv_clamp`` change no parameter. The 'skip'
generator (the reference's default, networks.py:337) cannot be built from ganforge's stack
components (see the blueprints' headers), so ganforge's G is compared with the reference G built
with ``synthesis_kwargs.architecture = 'orig'``; the 'skip' totals are recorded beside it.

Equalised learning rate is a run-time scale in both codes (weights stored N(0, 1), multiplied by
1/sqrt(fan_in) in the forward pass), so parameter shapes, and counts, are the reference's. The FIR
filters are buffers there and here, not parameters.

Forward equivalence, checked once outside the repository by copying the reference's weights into
ganforge's networks (eval mode, noise_mode 'const', batch 4, fp32 on CPU, random biases, noise
strengths and w_avg so that every parameter matters): ``cifar`` G max |Δ| 3.3e-6 against the
reference's non-fused modulated conv and 5.7e-6 against its default eval path (fused, grouped
conv), images of magnitude up to 3.1; with truncation ψ 0.7 3.3e-6; D max |Δ| 1.6e-7 (random
images) and 9.8e-7 (generated ones); path lengths (loss.py:81-84, gradients w.r.t. the styles)
6e-8. ``paper256``: G 1.1e-5 (1.2e-5 fused; images up to 5.4), D 1.8e-7 and 9.5e-7 (logits up to
1.0); path lengths 4.7e-5, where the reference's own fused and non-fused paths differ by 3.4e-5.
Class-conditional (c_dim 10, ``cifar``): G 4.3e-6, D 6.0e-7 (random images) and 1.5e-6.
"""

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
from ganforge.components.layers.fir import down_conv2d, fir_kernel, up_conv_transpose2d
from ganforge.components.layers.minibatch_stddev import MinibatchStdDev
from ganforge.engine.planning import plan_training
from ganforge.registry import default_registry

CIFAR, ADA, PAPER256 = "stylegan2_cifar10.yaml", "stylegan2_ada_cifar10.yaml", "stylegan2_paper256.yaml"

# name: (reference G with architecture 'orig', reference G 'skip' (the config's), reference D)
REFERENCE_PARAMS = {
    CIFAR: (19_154_954, 19_947_539, 20_720_641),      # cfg 'cifar', res 32, map 2, D 'orig'
    ADA: (19_154_954, 19_947_539, 20_720_641),        # the same networks; the augmenter has no parameters
    PAPER256: (23_512_528, 24_767_458, 24_001_089),   # cfg 'paper256', res 256, map 8, D 'resnet'
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
    g_orig, g_skip, d = REFERENCE_PARAMS[name]
    assert assembly.discriminator.params == d
    assert assembly.generator.params == g_orig
    # 'skip' adds a ToRGB (affine w_dim→C, 3×C weight, 3 biases) at every resolution but the last
    assert g_skip - g_orig == sum(512 * c + c + 3 * c + 3 for c in
                                  {CIFAR: [512] * 3, ADA: [512] * 3, PAPER256: [512] * 4 + [256, 128]}[name])


@pytest.mark.parametrize("name, g_orig, d", [(CIFAR, 19_422_730, 23_089_664), (PAPER256, 23_780_304, 26_370_112)])
def test_class_conditional_totals_equal_the_reference_networks(name, g_orig, d):
    """c_dim 10 (``--cond=1``): G's mapping embeds the label (networks.py:203-204), D maps it through
    its own 8-layer mapping network and projects (:697-698, 713-714, 663-665). Reference totals from
    the same CPU build with c_dim 10 (G 'orig'; 'skip': 20,215,315 and 25,035,234)."""
    assembly, _ = resolved(name, "data.num_classes=10")
    assert (assembly.generator.params, assembly.discriminator.params) == (g_orig, d)


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
    assert bp.generator.latent.settings["mixing"] == 0.9
    assert bp.generator.context[0].settings["num_layers"] == 8
    # 'orig' G: 13 convs and one ToRGB, one style each: the reference's num_ws 14 (networks.py:444-454)
    assert assembly.generator.context.consumers == {"style": 14}
    widths = [layer.output_shape[0] for layer in assembly.generator.layers[1:-1]]
    assert widths == [512] * 7 + [256, 256, 128, 128, 64, 64]  # min(16384 // res, 512)
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
    out += [f"generator.blocks.{i}.channels=8" for i, b in enumerate(bp.generator.blocks) if "channels" in b.settings]
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
    for key in ("g.layers.0.const", "g.layers.1.affine.weight", "g.layers.2.weight", "g.producers.0.layers.0.weight",
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
