"""LSGAN, AC-GAN (ACGAN-Mod) and ContraGAN on CIFAR-10 as StudioGAN configures them.

Each blueprint's parameter counts equal StudioGAN's networks, its training settings are the
config's, the StudioGAN-specific pieces compute what StudioGAN's code computes (checked against
hand formulas), ContraGAN's 2C loss equals a hand computation, and each trains 2 steps on the CPU
at a tiny size and restores from its checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ganforge.assembly import assemble
from ganforge.blueprint.validation import load_blueprint
from ganforge.components.blocks.biggan import BigGANUpBlock
from ganforge.components.blocks.contra import ContraOutput
from ganforge.components.blocks.studiogan import (
    ConvImageOutput,
    DeepConvUp,
    OneHotLabels,
    StudioGANDownResBlock,
)
from ganforge.components.losses.contrastive import ConditionalContrastive, conditional_contrastive
from ganforge.engine.planning import plan_training
from ganforge.records import DiscriminatorOutput, LabelPair
from ganforge.registry import default_registry
from support import BLUEPRINTS

pytestmark = pytest.mark.usefixtures("one_thread")

# Reference totals: StudioGAN's Generator and Discriminator built from github
# POSTECH-CVLab/PyTorch-StudioGAN at commit 947b35e (src/config.py's Configurations on each
# src/configs/CIFAR10/<name>.yaml, src/models/<backbone>.py, src/utils/ops.py) on the meta device in
# a scratch directory outside this repository, counted as StudioGAN counts them: the sum of
# p.numel() over module.parameters() (misc.count_parameters, src/utils/misc.py:188-189). StudioGAN's
# own CIFAR-10 training logs (logs/CIFAR10/*.log, an earlier version) print the same G and D for
# LSGAN and ContraGAN, and the same G for ACGAN; that ACGAN's D had 1,057,169, 10 more: a bias on the
# 10-way classifier that the current code leaves out (src/models/resnet.py:332, bias=False).
REFERENCE = {
    "lsgan_cifar10.yaml": (3_812_355, 2_931_009),      # LSGAN.yaml, deep_conv backbone
    "acgan_cifar10.yaml": (4_304_387, 1_057_159),      # ACGAN-Mod.yaml, resnet backbone (the default)
    "contragan_cifar10.yaml": (9_416_196, 2_517_186),  # ContraGAN.yaml, big_resnet backbone
}


def resolved(name: str, *overrides: str):
    loaded = load_blueprint(BLUEPRINTS / name, list(overrides))
    registry = default_registry()
    return assemble(loaded, registry), plan_training(loaded, registry)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_parameter_counts_equal_studiogans(name):
    assembly, _ = resolved(name)
    assert (assembly.generator.params, assembly.discriminator.params) == REFERENCE[name]


# --- settings -----------------------------------------------------------------------------------

def _adam(plan, d_steps: int) -> None:
    for role in ("generator", "discriminator"):  # config.py:232-247, :551-552
        settings = plan.optimizers[role].settings
        assert settings["lr"] == pytest.approx(2e-4) and tuple(settings["betas"]) == (0.5, 0.999)
        assert settings["eps"] == pytest.approx(1e-6)
    assert plan.d_steps == d_steps


def _sn(plan_network) -> list[bool]:
    return [layer.settings["spectral_norm"] for layer in plan_network.layers if "spectral_norm" in layer.settings]


def test_lsgan_settings():
    assembly, plan = resolved("lsgan_cifar10.yaml")
    _adam(plan, d_steps=2)  # LSGAN.yaml:12
    bp = assembly.loaded.blueprint
    assert plan.ema_decay is None
    assert (bp.train.batch_size, bp.train.steps, bp.data.settings["flip"], bp.train.precision) == (64, 200_000, True,
                                                                                                   "fp32")
    assert bp.loss.type == "least_squares" and bp.data.num_classes == 0 and bp.generator.latent_dim == 128
    assert bp.generator.init.type == bp.discriminator.init.type == "orthogonal"
    assert not any(_sn(assembly.generator)) and not any(_sn(assembly.discriminator))
    assert not assembly.generator.attention and not assembly.discriminator.attention
    loss = assembly.components.loss.build()
    assert (loss.fake_target, loss.real_target, loss.generator_target) == (0.0, 1.0, 1.0)  # losses.py:216-223


def test_acgan_settings():
    assembly, plan = resolved("acgan_cifar10.yaml")
    _adam(plan, d_steps=5)  # config.py:254
    bp = assembly.loaded.blueprint
    assert plan.ema_decay is None
    assert (bp.train.batch_size, bp.train.steps, bp.data.settings["flip"], bp.data.num_classes) == (64, 100_000, True,
                                                                                                    10)
    assert bp.loss.type == "acgan" and bp.loss.settings == {"adversarial": "hinge", "classifier_weight": 1.0}
    assert not any(_sn(assembly.generator)) and not any(_sn(assembly.discriminator))  # apply_*_sn False
    assert not assembly.generator.attention and not assembly.discriminator.attention
    d_blocks = [layer for layer in assembly.discriminator.layers if layer.component == "studiogan_down_resblock"]
    assert all(layer.settings["batch_norm"] for layer in d_blocks)
    assert all(layer.settings["eps"] == 1e-4 for layer in assembly.generator.layers
               if layer.component == "biggan_up")  # ops.py:19


def test_contragan_settings():
    assembly, plan = resolved("contragan_cifar10.yaml")
    _adam(plan, d_steps=5)
    assert (plan.ema_decay, plan.ema_start) == (0.9999, 1000)  # ContraGAN.yaml:20-22
    bp = assembly.loaded.blueprint
    assert (bp.train.batch_size, bp.train.steps, bp.data.settings["flip"], bp.data.num_classes) == (64, 100_000, True,
                                                                                                    10)
    assert bp.generator.latent_dim == 80
    assert bp.loss.settings == {"adversarial": "hinge", "contrastive_weight": 1.0, "temperature": 1.0}
    assert all(_sn(assembly.generator)) and all(_sn(assembly.discriminator))
    assert {layer.settings["sn_eps"] for net in (assembly.generator, assembly.discriminator)
            for layer in net.layers if "sn_eps" in layer.settings} == {1e-6}  # ops.py:195-224
    assert [(a.output_shape[1], a.output_shape[0]) for a in assembly.generator.attention] == [(16, 384)]
    assert [(a.output_shape[1], a.output_shape[0]) for a in assembly.discriminator.attention] == [(16, 192)]
    head = assembly.discriminator.layers[-1]
    assert head.component == "contra_output" and head.settings["embed_dim"] == 512 and head.settings["normalize"]
    d_blocks = [layer for layer in assembly.discriminator.layers if layer.component == "studiogan_down_resblock"]
    assert len(d_blocks) == 4 and not any(layer.settings["batch_norm"] for layer in d_blocks)


# --- the 2C loss --------------------------------------------------------------------------------

def test_conditional_contrastive_equals_a_hand_computation():
    """Three images, two classes, temperature 1/2, embeddings not yet of unit length.

    e1 = (1, 0), e2 = (0, 1), e3 ∝ (1, 1); labels 0, 0, 1; proxies (1, 0), (1, 0), (0, 1). Cosines:
    c12 = 0, c13 = c23 = 1/√2; to the proxy: 1, 0, 1/√2. With s = cos / t (t = 1/2):
      image 1: (e^2 + e^0) / (e^2 + e^0 + e^√2)     (image 2 is its positive)
      image 2: (e^0 + e^0) / (e^0 + e^0 + e^√2)     (image 1 is its positive)
      image 3: e^√2 / (e^√2 + e^√2 + e^√2) = 1/3   (no positive; both others at cos 1/√2)
    loss = −mean(log of those).
    """
    r = math.sqrt(2)
    expected = -(math.log((math.e**2 + 1) / (math.e**2 + 1 + math.exp(r)))
                 + math.log(2 / (2 + math.exp(r))) + math.log(1 / 3)) / 3
    embedding = torch.tensor([[2.0, 0.0], [0.0, 0.5], [3.0, 3.0]])
    proxy = torch.tensor([[1.0, 0.0], [4.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0, 1])
    got = conditional_contrastive(embedding, proxy, labels, temperature=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_conditional_contrastive_is_stable_at_small_temperatures():
    torch.manual_seed(0)
    e, p, y = torch.randn(16, 8), torch.randn(16, 8), torch.randint(0, 3, (16,))
    loss = conditional_contrastive(e, p, y, temperature=1e-3)  # exp(1000) would overflow float32
    assert torch.isfinite(loss)


def test_contra_loss_adds_the_weighted_2c_term_to_hinge():
    torch.manual_seed(0)

    def output(n: int) -> DiscriminatorOutput:
        return DiscriminatorOutput(logit=torch.randn(n),
                                   extras={"embedding": torch.randn(n, 6), "proxy": torch.randn(n, 6)})

    real, fake = output(5), output(5)
    labels = LabelPair(real=torch.tensor([0, 1, 1, 2, 0]), fake=torch.tensor([2, 2, 0, 1, 1]))
    loss = ConditionalContrastive(adversarial="hinge", contrastive_weight=0.5, temperature=0.3)
    two_c = lambda out, y: conditional_contrastive(out.embedding, out.proxy, y, temperature=0.3)
    hinge_d = F.relu(1 - real.logit).mean() + F.relu(1 + fake.logit).mean()
    d = loss.discriminator_loss(real=real, fake=fake, labels=labels)
    assert d.item() == pytest.approx((hinge_d + 0.5 * two_c(real, labels.real)).item(), rel=1e-6)  # worker.py:304-309
    g = loss.generator_loss(fake=fake, labels=labels)
    assert g.item() == pytest.approx((-fake.logit.mean() + 0.5 * two_c(fake, labels.fake)).item(), rel=1e-6)
    with pytest.raises(ValueError, match="needs class labels"):
        loss.discriminator_loss(real=real, fake=fake, labels=LabelPair(real=None, fake=None))


# --- StudioGAN's layers -------------------------------------------------------------------------

def test_contra_output_gives_normalised_embedding_and_class_proxy():
    torch.manual_seed(0)
    head = ContraOutput(in_channels=4, num_classes=3, embed_dim=5, spectral_norm=False).eval()
    x, labels = torch.randn(2, 4, 3, 3), torch.tensor([2, 0])
    out = head(x, labels)
    h = F.relu(x).sum(dim=(2, 3))  # big_resnet.py:359-360
    assert torch.allclose(out["logit"], h @ head.linear.weight.T + head.linear.bias, atol=1e-6)
    embedding = h @ head.projection.weight.T + head.projection.bias
    assert torch.allclose(out["embedding"], embedding / embedding.norm(dim=1, keepdim=True), atol=1e-6)
    proxy = head.class_embedding.weight[labels]
    assert torch.allclose(out["proxy"], proxy / proxy.norm(dim=1, keepdim=True), atol=1e-6)
    with pytest.raises(ValueError, match="num_classes >= 1"):
        ContraOutput(in_channels=4, num_classes=0)


def _conv(conv, x):
    return F.conv2d(x, conv.weight, conv.bias, padding=conv.padding)


def test_studiogan_residual_block_shortcut_reads_the_activated_input_without_batch_norm():
    """StudioGAN's DiscBlock keeps x0 = x, then ReLU(inplace=True) overwrites it (resnet.py:234-237)."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6)
    block = StudioGANDownResBlock(in_channels=4, in_size=6, channels=4, downsample=False, batch_norm=False)
    branch = _conv(block.conv2, F.relu(_conv(block.conv1, F.relu(x))))
    with torch.no_grad():
        assert torch.allclose(block(x), branch + F.relu(x), atol=1e-6)
        plain = StudioGANDownResBlock(in_channels=4, in_size=6, channels=4, downsample=False, batch_norm=False,
                                      activated_shortcut=False)
        plain.load_state_dict(block.state_dict())
        assert torch.allclose(plain(x), branch + x, atol=1e-6)
        # with batch norms the activation works on BN's output; the shortcut BN → conv1×1 → pool reads x
        bn = StudioGANDownResBlock(in_channels=4, in_size=6, channels=8).train()
        norm = lambda t: F.batch_norm(t, None, None, training=True, eps=1e-4)  # a fresh BN: gain 1, bias 0
        branch = F.avg_pool2d(_conv(bn.conv2, F.relu(norm(_conv(bn.conv1, F.relu(norm(x)))))), 2)
        assert torch.allclose(bn(x), branch + F.avg_pool2d(_conv(bn.shortcut, norm(x)), 2), atol=1e-5)


def test_one_hot_labels_make_biggan_up_studiogans_conditional_batch_norm():
    """ops.py:24-28: BN(x, eps 1e-4, no affine) · (1 + W_g·onehot(y)) + W_b·onehot(y)."""
    torch.manual_seed(0)
    onehot = OneHotLabels(num_classes=3)(labels=torch.tensor([2, 0]))["class_embedding"]
    assert onehot.tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    block = BigGANUpBlock(in_channels=4, channels=4, class_embedding_dim=3, eps=1e-4, spectral_norm=False).train()
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        got = block.bn1(x, onehot)
        gain, bias = block.bn1.gain.weight[:, [2, 0]].T, block.bn1.bias.weight[:, [2, 0]].T  # (B, C)
        normalised = F.batch_norm(x, None, None, training=True, eps=1e-4)
        assert torch.allclose(got, normalised * (1 + gain[:, :, None, None]) + bias[:, :, None, None], atol=1e-6)


def test_deep_conv_pieces_keep_their_biases_and_eps():
    up = DeepConvUp(in_channels=4, channels=3)
    assert up.deconv.bias is not None and up.bn.bn.eps == 1e-4 and up.bn.bn.affine  # deep_conv.py:21-24
    out = ConvImageOutput(in_channels=4, batch_norm=False)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        assert torch.allclose(out(x), torch.tanh(_conv(out.conv, x)), atol=1e-6)  # deep_conv.py:124-125


# --- two training steps each --------------------------------------------------------------------

TINY_TRAIN = ["train.batch_size=4", "train.num_workers=0", "train.log_every=1", "train.sample_every=1000",
              "train.checkpoint_every=2", "train.precision=fp32"]
TINY = {
    "lsgan_cifar10.yaml": ["data={type: procedural, resolution: 16, num_classes: 0, size: 64}",
                           "generator.latent_dim=16", "generator.stem.channels=16", "generator.stem.size=2",
                           "generator.blocks.0.channels=16", "generator.blocks.1.channels=8",
                           "generator.blocks.2.channels=8", "discriminator.blocks.0.channels=8",
                           "discriminator.blocks.1.channels=8", "discriminator.blocks.2.channels=16",
                           "discriminator.blocks.3.channels=16"],
    "acgan_cifar10.yaml": ["data={type: procedural, resolution: 16, num_classes: 4, size: 64}",
                           "generator.latent_dim=16", "generator.stem.channels=16", "generator.stem.size=2",
                           *[f"generator.blocks.{i}.channels=16" for i in range(3)],
                           *[f"discriminator.blocks.{i}.channels=16" for i in range(4)]],
    "contragan_cifar10.yaml": ["data={type: procedural, resolution: 16, num_classes: 4, size: 64}",
                               "generator.latent_dim=16", "generator.context.0.dim=8", "generator.stem.channels=16",
                               "generator.stem.size=2", *[f"generator.blocks.{i}.channels=16" for i in range(3)],
                               "generator.attention.0.resolution=8",
                               *[f"discriminator.blocks.{i}.channels=16" for i in range(4)],
                               "discriminator.attention.0.resolution=8", "discriminator.head.embed_dim=8",
                               "update_rule.2.start=1"],
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_two_training_steps_then_restore(tmp_path: Path, name):
    from ganforge.engine.build import build_trainer
    from ganforge.engine.distributed import place_process
    from ganforge.engine.restore import restore

    out = tmp_path / "run"
    trainer = build_trainer(str(BLUEPRINTS / name), overrides=[*TINY[name], *TINY_TRAIN],
                            placement=place_process("cpu"), out=out, steps=2)
    update = trainer.update
    before_g = {k: v.clone() for k, v in update.generator.state_dict().items()}
    before_d = {k: v.clone() for k, v in update.discriminator.state_dict().items()}
    losses = [update.train_step() for _ in range(2)]
    assert all(torch.isfinite(d) and torch.isfinite(g) for d, g in losses), losses
    for network, before in ((update.generator, before_g), (update.discriminator, before_d)):
        changed = [k for k, v in network.state_dict().items()
                   if v.is_floating_point() and not torch.equal(v, before[k])]
        assert changed, f"{name}: no weight moved in {type(network).__name__}"
    trainer.open()
    trainer.checkpoint()

    restored = restore(out)
    assert restored.step == 2 and restored.uses_ema == (name == "contragan_cifar10.yaml")
    sampler = update.sampling_generator().eval()
    z = torch.randn(3, 16)
    labels = None if name == "lsgan_cifar10.yaml" else torch.tensor([0, 3, 1])
    with torch.no_grad():
        assert torch.equal(restored.generator(z, labels), sampler(z, labels))
    d = restored.discriminator()
    assert all(torch.equal(v, update.discriminator.state_dict()[k]) for k, v in d.state_dict().items())
