"""SNGAN (CIFAR-10 ResNet) and WGAN-GP (CIFAR-10 ResNet) blueprints against their released code.

Both references are not PyTorch (SNGAN: Chainer, github pfnet-research/sngan_projection; WGAN-GP:
TensorFlow, github igul222/improved_wgan_training), so their parameter counts are counted by reading
the code, below, and no forward equivalence is checked (there is no PyTorch network to copy from).
A parameter of Chainer is a ``chainer.Parameter`` (conv/linear W and b, BatchNormalization gamma and
beta; avg_mean/avg_var and the spectral-norm ``u`` are persistents); of tflib a trainable ``lib.param``.

SNGAN, ``configs/sn_cifar10_unconditional.yml`` (dim_z 128, bottom_width 4, G ch 256, D ch 128, n_classes 0):
  G (gen_models/resnet_32.py, gen_models/resblocks.py; L.Linear and L.Convolution2D have biases):
    l1  Linear(128, 4·4·256)                        128·4096 + 4096            =   528,384
    block2..4, each Block(256, 256, upsample=True):
      b1 BN(256) 2·256 = 512; c1 3×3 256·256·9 + 256 = 590,080; b2 BN 512; c2 590,080;
      c_sc 1×1 256·256 + 256 = 65,792                                   → 1,246,976 × 3 = 3,740,928
    b5  BN(256)                                     2·256                      =       512
    c5  Conv 3×3 256→3                              256·3·9 + 3                =     6,915
    total G                                                                     = 4,276,739
  D (dis_models/snresnet_32.py, dis_models/resblocks.py; SNConvolution2D has a bias, l5 has nobias=True):
    block1 OptimizedBlock(3, 128): c1 3·128·9 + 128 = 3,584; c2 128·128·9 + 128 = 147,584;
      c_sc 3·128 + 128 = 512                                                      =   151,680
    block2 Block(128, 128, downsample=True): c1 147,584 + c2 147,584 + c_sc 128·128 + 128 = 16,512
                                                                                  =   311,680
    block3, block4 Block(128, 128, downsample=False): no shortcut conv, 2 · 147,584 = 295,168 each
                                                                                  =   590,336
    l5  SNLinear(128, 1, nobias=True)               128                        =       128
    total D                                                                     = 1,053,824

WGAN-GP, ``gan_cifar_resnet.py`` with CONDITIONAL = False (DIM_G = DIM_D = 128, z 128; tflib Linear and
Conv2D have biases by default, Batchnorm has offset + scale):
  G:
    Generator.Input Linear(128, 4·4·128)            128·2048 + 2048            =   264,192
    Generator.1..3, each ResidualBlock(128, 128, 'up'):
      Shortcut UpsampleConv 1×1 128·128 + 128 = 16,512; N1 BN 2·128 = 256;
      Conv1 UpsampleConv 3×3 128·128·9 + 128 = 147,584; N2 256; Conv2 147,584 → 312,192 × 3 =   936,576
    Generator.OutputN BN(128)                       2·128                      =       256
    Generator.Output Conv 3×3 128→3                 128·3·9 + 3                =     3,459
    total G (trainable)                                                         = 1,204,483
    (the script's own printout would add moving_mean + moving_variance, tflib/ops/batchnorm.py:26-27:
     7 batch norms · 2 · 128 = 1,792, non-trainable)
  D (no normalisation: NORMALIZATION_D = False):
    Discriminator.1 (OptimizedResBlockDisc1): Shortcut MeanPoolConv 1×1 3·128 + 128 = 512;
      Conv1 3×3 3·128·9 + 128 = 3,584; Conv2 ConvMeanPool 3×3 147,584             =   151,680
    Discriminator.2 'down': Shortcut ConvMeanPool 1×1 16,512; Conv1 147,584; Conv2 147,584 =   311,680
    Discriminator.3, .4 (resample None, 128→128): identity shortcut, 2 · 147,584 each =   590,336
    Discriminator.Output Linear(128, 1)             128 + 1                    =       129
    total D                                                                     = 1,053,825
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ganforge.assembly import assemble
from ganforge.blueprint.validation import load_blueprint
from ganforge.components.blocks.wgan import PooledLinearOutput
from ganforge.engine.planning import plan_training
from ganforge.registry import default_registry
from support import BLUEPRINTS

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

SNGAN = BLUEPRINTS / "sngan_cifar10.yaml"
WGAN_GP = BLUEPRINTS / "wgan_gp_cifar10.yaml"

# (blueprint, reference G, reference D): counted from the released code in the module docstring
REFERENCE_COUNTS = [
    (SNGAN, 4_276_739, 1_053_824),    # pfnet-research/sngan_projection, Chainer
    (WGAN_GP, 1_204_483, 1_053_825),  # igul222/improved_wgan_training, TensorFlow
]

# A 16×16 model two G blocks deep and 8 channels wide, on unconditional procedural images.
TINY = ["generator.latent_dim=8", "generator.stem.channels=8",
        "generator.blocks=[{type: up_resblock, channels: 8}, {type: up_resblock, channels: 8}]",
        "discriminator.blocks=[{type: down_resblock, channels: 8, optimized: true}, "
        "{type: down_resblock, channels: 8}, {type: down_resblock, channels: 8, downsample: false}]",
        "data={type: procedural, resolution: 16, channels: 3, num_classes: 0, size: 16}",
        "train.batch_size=4", "train.num_workers=0", "train.log_every=1", "train.sample_every=1000",
        "train.checkpoint_every=1000", "train.fused_optimizer=false"]


def resolved(path: Path, *overrides: str):
    loaded = load_blueprint(path, list(overrides))
    registry = default_registry()
    return assemble(loaded, registry), plan_training(loaded, registry)


def scheduled_lrs(plan, step: int, total: int) -> dict[str, float]:
    """The learning rates the plan's step hooks set before ``step`` (optimisers stood in by param groups)."""
    optimizers = {role: SimpleNamespace(param_groups=[{}]) for role in ("generator", "discriminator")}
    for hook in plan.step_hooks:
        hook(step, total, optimizers)
    return {role: opt.param_groups[0]["lr"] for role, opt in optimizers.items()}


# --- parameters ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "g_params", "d_params"), REFERENCE_COUNTS, ids=["sngan", "wgan_gp"])
def test_parameter_counts_equal_the_reference_code(path, g_params, d_params):
    assembly = assemble(load_blueprint(path))
    assert assembly.generator.params == g_params
    assert assembly.discriminator.params == d_params
    # and the built networks agree with the planner's count
    for plan, expected in ((assembly.generator, g_params), (assembly.discriminator, d_params)):
        network = plan.build("meta", initialise=False)
        assert sum(p.numel() for p in network.parameters()) == expected


# --- the head both families need ------------------------------------------------------------------

@pytest.mark.parametrize(("pool", "bias"), [("mean", True), ("sum", False)])
def test_pooled_linear_output_is_relu_pool_linear(pool, bias):
    torch.manual_seed(0)
    head = PooledLinearOutput(in_channels=5, pool=pool, bias=bias, spectral_norm=False)
    x = torch.randn(3, 5, 4, 4)
    # written out: relu, then the mean (WGAN-GP :171-172) or sum (SNGAN snresnet_32.py:27-29) over 16 positions
    pooled = torch.clamp(x, min=0).reshape(3, 5, 16)
    pooled = pooled.sum(dim=2) / (16 if pool == "mean" else 1)
    expected = pooled @ head.linear.weight.detach().T + (head.linear.bias.detach() if bias else 0)
    torch.testing.assert_close(head(x), expected)
    assert head(x).shape == (3, 1)
    assert sum(p.numel() for p in head.parameters()) == 5 + int(bias)


# --- settings the blueprints claim ----------------------------------------------------------------

def _spectral_norm(assembly, role: str) -> list[bool]:
    return [layer.settings["spectral_norm"] for layer in getattr(assembly, role).layers
            if "spectral_norm" in layer.settings]


def _common(assembly, plan, *, steps: int) -> None:
    for role in ("generator", "discriminator"):
        settings = plan.optimizers[role].settings
        assert plan.optimizers[role].name == "adam"
        assert settings["lr"] == pytest.approx(2e-4) and tuple(settings["betas"]) == (0.0, 0.9)
        assert settings["eps"] == pytest.approx(1e-8)
    assert plan.d_steps == 5 and plan.ema_decay is None
    bp = assembly.loaded.blueprint
    assert (bp.train.batch_size, bp.train.steps, bp.train.precision) == (64, steps, "fp32")
    assert (bp.data.resolution, bp.data.num_classes, bp.data.settings["flip"]) == (32, 0, False)
    assert bp.generator.latent_dim == 128
    assert not assembly.generator.attention and not assembly.discriminator.attention
    assert not any(_spectral_norm(assembly, "generator"))
    g_blocks = [layer for layer in assembly.generator.layers if layer.component == "up_resblock"]
    assert [layer.output_shape[1] for layer in g_blocks] == [8, 16, 32]
    d_blocks = [layer for layer in assembly.discriminator.layers if layer.component == "down_resblock"]
    assert [(layer.output_shape[0], layer.output_shape[1]) for layer in d_blocks] == [(128, 16), (128, 8)] + [(128, 8)] * 2
    assert d_blocks[0].settings["optimized"] and [layer.settings["downsample"] for layer in d_blocks] == [True, True,
                                                                                                          False, False]
    # linear decay to 0 over the run, starting at once: base · (1 − k / steps) at step k
    for k in (0, 1, steps // 2, steps - 1):
        lrs = scheduled_lrs(plan, k, steps)
        assert lrs["generator"] == pytest.approx(2e-4 * max(0.0, 1 - k / steps), abs=1e-15)
        assert lrs["discriminator"] == lrs["generator"]


def test_sngan_follows_the_released_cifar10_config():
    assembly, plan = resolved(SNGAN)
    _common(assembly, plan, steps=50_000)
    assert assembly.components.loss.component.name == "hinge"
    assert assembly.components.regularizers == ()
    assert _spectral_norm(assembly, "discriminator") and all(_spectral_norm(assembly, "discriminator"))
    head = assembly.discriminator.layers[-1]
    assert head.component == "pooled_linear_output"
    assert (head.settings["pool"], head.settings["bias"], head.settings["sn_eps"]) == ("sum", False, 1e-12)
    assert assembly.generator.layers[0].output_shape == (256, 4, 4)
    assert all(layer.output_shape[0] == 256 for layer in assembly.generator.layers[:-1])


def test_wgan_gp_follows_gan_cifar_resnet():
    assembly, plan = resolved(WGAN_GP)
    _common(assembly, plan, steps=100_000)
    assert assembly.components.loss.component.name == "wasserstein"
    (penalty,) = assembly.components.regularizers
    assert penalty.component.name == "gradient_penalty"
    assert penalty.settings == {"weight": 10.0, "target": 1.0}
    assert not any(_spectral_norm(assembly, "discriminator"))  # NORMALIZATION_D = False, no SN
    head = assembly.discriminator.layers[-1]
    assert (head.component, head.settings["pool"], head.settings["bias"]) == ("pooled_linear_output", "mean", True)
    assert assembly.generator.layers[0].output_shape == (128, 4, 4)
    assert all(layer.output_shape[0] == 128 for layer in assembly.generator.layers[:-1])


# --- each trains ------------------------------------------------------------------------------

# The Wasserstein critic's output bias cancels in mean(D(fake)) − mean(D(real)) and the gradient
# penalty does not see it, so its gradient is exactly 0 and Adam leaves it where it was (in the
# reference too: the same loss, gan_cifar_resnet.py:222,264).
STILL = {SNGAN: set(), WGAN_GP: {"layers.3.linear.bias"}}


@pytest.mark.parametrize("path", [SNGAN, WGAN_GP], ids=["sngan", "wgan_gp"])
def test_two_cpu_steps_train_and_restore(tmp_path, path):
    from ganforge.engine.build import build_trainer
    from ganforge.engine.distributed import place_process
    from ganforge.engine.restore import restore

    t = build_trainer(str(path), overrides=TINY, placement=place_process("cpu"), out=tmp_path)
    g0 = {k: v.detach().clone() for k, v in t.update.generator.named_parameters()}
    d0 = {k: v.detach().clone() for k, v in t.update.discriminator.named_parameters()}
    losses = [t.train_step() for _ in range(2)]
    assert all(math.isfinite(float(d)) and math.isfinite(float(g)) for d, g in losses), losses
    for network, before, still in ((t.update.generator, g0, set()), (t.update.discriminator, d0, STILL[path])):
        unmoved = {k for k, v in network.named_parameters() if torch.equal(before[k], v.detach())}
        assert unmoved == still
    g1, d1 = t.update.generator.state_dict(), t.update.discriminator.state_dict()
    t.checkpoint()
    restored = restore(tmp_path)
    assert restored.step == 2
    for key, value in restored.generator.state_dict().items():
        torch.testing.assert_close(value, g1[key], rtol=0, atol=0)
    for key, value in restored.discriminator().state_dict().items():
        torch.testing.assert_close(value, d1[key], rtol=0, atol=0)
