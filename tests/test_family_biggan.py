"""The BigGAN family: blueprints/biggan_imagenet128.yaml and biggan_cifar10.yaml against BigGAN-PyTorch.

Reference parameter counts: built from github ajbrock/BigGAN-PyTorch at commit 9845943 (BigGAN.py,
layers.py, sync_batchnorm/) in a scratch directory outside this repository, on the meta device
(``skip_init=True``), counted as train.py:93-94 prints them (sum of ``p.nelement()`` over
``parameters()``), with each launch script's settings over utils.py's defaults:

* ImageNet 128², scripts/launch_BigGAN_bs256x8.sh: ``Generator(G_ch=96, dim_z=120, shared_dim=128,
  hier=True, G_shared=True, resolution=128, G_attn='64', n_classes=1000, num_G_SVs=1)`` has
  70,433,988 parameters, ``Discriminator(D_ch=96, resolution=128, D_attn='64', n_classes=1000,
  num_D_SVs=1)`` 87,982,370 (the numbers issue 19 quotes).
* CIFAR-10, scripts/launch_cifar_ema.sh: ``Generator(G_ch=64, dim_z=128, G_shared=False, hier=False,
  resolution=32, G_attn='0', n_classes=10)`` has 4,304,387, ``Discriminator(D_ch=64, resolution=32,
  D_attn='0', n_classes=10)`` 4,207,361.

Forward equivalence (the reference's weights copied into these networks, eval mode) was run by hand
outside the repository; its figures are in the blueprints' headers. Here: the settings each blueprint
claims, BigGAN's orthogonal initialisation checked against orthonormality itself, and two CPU training
steps of each blueprint at a tiny size that restore from their checkpoint.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from ganforge.assembly import assemble
from ganforge.blueprint.validation import load_blueprint
from ganforge.engine.planning import plan_training
from ganforge.registry import default_registry
from support import BLUEPRINTS

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

IMAGENET = "biggan_imagenet128.yaml"
CIFAR = "biggan_cifar10.yaml"

# (G, D) of BigGAN-PyTorch built with each script's settings (module docstring)
REFERENCE_COUNTS = {IMAGENET: (70_433_988, 87_982_370), CIFAR: (4_304_387, 4_207_361)}

DATA = "data={type: procedural, resolution: 16, num_classes: 4, size: 64}"
TRAIN = ["train.num_workers=0", "train.log_every=1", "train.sample_every=1000", "train.checkpoint_every=2"]
# 16×16 with narrow layers; the ImageNet one keeps shared embedding, hierarchical z (3 chunks of 4),
# attention in G and D, and gradient accumulation (2 micro-batches of 4)
TINY = {
    IMAGENET: [
        DATA, "generator.latent_dim=12",
        "generator.context=[{type: shared_embedding, dim: 8}, {type: hierarchical_z}]",
        "generator.stem={type: linear_stem, channels: 16, size: 4}",
        "generator.blocks=[{type: biggan_up, channels: 16}, {type: biggan_up, channels: 8}]",
        "generator.attention=[{resolution: 8, type: self_attention, pooled: true}]",
        ("discriminator.blocks=[{type: down_resblock, channels: 8, optimized: true}, "
         "{type: down_resblock, channels: 16}, {type: down_resblock, channels: 16, downsample: false}]"),
        "discriminator.attention=[{resolution: 8, type: self_attention, pooled: true}]",
        "train.batch_size=8", "train.grad_accumulation=2", *TRAIN,
    ],
    CIFAR: [
        DATA, "generator.latent_dim=16",
        "generator.stem={type: linear_stem, channels: 16, size: 4}",
        "generator.blocks=[{type: up_resblock, channels: 16}, {type: up_resblock, channels: 16}]",
        ("discriminator.blocks=[{type: down_resblock, channels: 16, optimized: true}, "
         "{type: down_resblock, channels: 16}, {type: down_resblock, channels: 16, downsample: false}]"),
        "train.batch_size=4", *TRAIN,
    ],
}


def resolved(name: str, *overrides: str):
    loaded = load_blueprint(BLUEPRINTS / name, list(overrides))
    registry = default_registry()
    return assemble(loaded, registry), plan_training(loaded, registry)


def sn_layers(network_plan) -> list:
    return [layer for layer in network_plan.layers if "sn_eps" in layer.settings]


# -- parameters --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [IMAGENET, CIFAR])
def test_parameter_counts_equal_biggan_pytorch(name):
    assembly, _ = resolved(name)
    assert (assembly.generator.params, assembly.discriminator.params) == REFERENCE_COUNTS[name]


def test_imagenet128_parts_have_the_reference_sizes():
    """Per part, from BigGAN.py with G_ch = D_ch = 96: embedding 1000×128 (149), first linear 20 → 1536·16
    (152-153), attention at 64×64 on 2·96 channels in G and 96 in D (G_arch/D_arch[128], 33-38 and 263-268)."""
    assembly, _ = resolved(IMAGENET)
    g, d = assembly.generator, assembly.discriminator
    assert g.context.params == 1000 * 128
    assert g.context.entries == {"class_embedding": ("shared", 128), "z_chunk": ("per_layer", 20)}
    assert g.layers[0].component == "linear_stem" and g.layers[0].params == 20 * 1536 * 16 + 1536 * 16
    assert [(a.output_shape, a.params) for a in g.attention] == [((192, 64, 64), 2 * 192 * 24 + 192 * 96 * 2 + 1)]
    assert [(a.output_shape, a.params) for a in d.attention] == [((96, 64, 64), 2 * 96 * 12 + 96 * 48 * 2 + 1)]
    ups = [layer for layer in g.layers if layer.component == "biggan_up"]
    assert [layer.context for layer in ups] == [{"class_embedding": None, "z_chunk": i} for i in range(5)]
    assert [layer.output_shape[0] for layer in ups] == [1536, 768, 384, 192, 96]
    downs = [layer for layer in d.layers if layer.component == "down_resblock"]
    assert [layer.output_shape for layer in downs] == [(96, 64, 64), (192, 32, 32), (384, 16, 16), (768, 8, 8),
                                                       (1536, 4, 4), (1536, 4, 4)]
    assert [layer.settings["optimized"] for layer in downs] == [True] + [False] * 5  # preactivation=(index > 0)


# -- the settings each blueprint claims ---------------------------------------------------------
def test_imagenet128_trains_as_launch_biggan_bs256x8():
    assembly, plan = resolved(IMAGENET)
    bp = assembly.loaded.blueprint
    g, d = plan.optimizers["generator"].settings, plan.optimizers["discriminator"].settings
    assert (g["lr"], d["lr"]) == (1e-4, 4e-4)
    assert tuple(g["betas"]) == tuple(d["betas"]) == (0.0, 0.999)
    assert g["eps"] == d["eps"] == 1e-6 and g["weight_decay"] == d["weight_decay"] == 0
    assert (plan.d_steps, plan.ema_decay, plan.ema_start) == (1, 0.9999, 20_000)
    assert bp.regularizers == []  # --G_ortho 0.0
    assert (bp.train.batch_size, bp.train.grad_accumulation, bp.train.steps) == (2048, 8, 150_000)
    assert bp.train.precision == "fp32" and bp.train.seed == 0
    assert bp.generator.latent_dim == 120
    assert [p.component for p in assembly.generator.context.producers] == ["shared_embedding", "hierarchical_z"]
    for network in (assembly.generator, assembly.discriminator):
        assert network.init[0].name == "orthogonal" and network.init[1] == {"gain": 1.0}
        layers = sn_layers(network)
        assert len(layers) == len(network.layers)  # every component is spectrally normalised
        assert {(x.settings["spectral_norm"], x.settings["sn_eps"], x.settings["sn_iterations"]) for x in layers} \
            == {(True, 1e-6, 1)}
    for layer in assembly.generator.layers:
        if layer.component == "biggan_up":
            assert (layer.settings["eps"], layer.settings["momentum"]) == (1e-5, 0.1)
    assert assembly.generator.layers[-1].settings["bn_momentum"] == 0.1
    assert bp.data.num_classes == 1000 and bp.data.resolution == 128 and bp.data.settings["flip"] is False
    assert bp.loss.type == "hinge"


def test_cifar10_trains_as_launch_cifar_ema():
    assembly, plan = resolved(CIFAR)
    bp = assembly.loaded.blueprint
    for role in ("generator", "discriminator"):
        settings = plan.optimizers[role].settings
        assert settings["lr"] == 2e-4 and tuple(settings["betas"]) == (0.0, 0.999) and settings["eps"] == 1e-8
    assert (plan.d_steps, plan.ema_decay, plan.ema_start) == (4, 0.9999, 1000)
    assert bp.regularizers == []
    assert (bp.train.batch_size, bp.train.grad_accumulation, bp.train.steps) == (50, 1, 125_000)
    assert bp.train.precision == "fp32"
    assert bp.generator.latent_dim == 128 and bp.generator.context == []
    assert not assembly.generator.attention and not assembly.discriminator.attention  # --G_attn 0 --D_attn 0
    for network in (assembly.generator, assembly.discriminator):
        assert network.init[0].name == "normal" and network.init[1] == {"std": 0.02}
        assert {layer.settings["sn_eps"] for layer in sn_layers(network)} == {1e-8}
    ups = [layer for layer in assembly.generator.layers if layer.component == "up_resblock"]
    assert [layer.output_shape for layer in ups] == [(256, 8, 8), (256, 16, 16), (256, 32, 32)]
    assert all(layer.settings["conditional"] and layer.settings["bn_momentum"] == 0.1 for layer in ups)
    downs = [layer for layer in assembly.discriminator.layers if layer.component == "down_resblock"]
    assert [layer.output_shape for layer in downs] == [(256, 16, 16), (256, 8, 8), (256, 8, 8), (256, 8, 8)]
    assert bp.data.num_classes == 10 and bp.data.resolution == 32 and bp.data.settings["flip"] is False


# -- initialisation ---------------------------------------------------------------------------------
def test_orthogonal_init_covers_what_biggan_initialises():
    """BigGAN.py:209-216 and 374-381: init.orthogonal_ on the weight of every nn.Conv2d, nn.Linear and
    nn.Embedding (the shared embedding, the batch norms' gain/bias linears and D's projection embedding
    included). Checked here by orthonormality of the rows (or columns, when there are more rows than
    columns) of each weight as a matrix; biases are 0 in ganforge (PyTorch's default in BigGAN-PyTorch)."""
    assembly, _ = resolved(IMAGENET, *TINY[IMAGENET])
    torch.manual_seed(0)
    seen = set()
    for network in (assembly.generator.build("cpu"), assembly.discriminator.build("cpu")):
        for name, module in network.named_modules():
            if not isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
                continue
            weight = (module.parametrizations.weight.original if parametrize.is_parametrized(module, "weight")
                      else module.weight).detach()
            m = weight.reshape(weight.shape[0], -1)
            gram = m @ m.t() if m.shape[0] <= m.shape[1] else m.t() @ m
            torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-5, rtol=0, msg=name)
            if getattr(module, "bias", None) is not None:
                assert torch.count_nonzero(module.bias) == 0, name
            seen.add(name.rsplit(".", 1)[-1] if "." in name else name)
    assert {"embedding", "gain", "bias", "linear", "conv1", "conv2", "shortcut", "theta", "phi", "g", "out"} <= seen


# -- two training steps on the CPU, then restore ---------------------------------------------------
@pytest.mark.parametrize("name", [IMAGENET, CIFAR])
def test_two_cpu_steps_train_and_restore(tmp_path, name):
    import json

    from ganforge.engine.build import build_trainer
    from ganforge.engine.distributed import place_process
    from ganforge.engine.restore import restore

    run = tmp_path / "run"
    trainer = build_trainer(str(BLUEPRINTS / name), overrides=TINY[name], placement=place_process("cpu"), out=run,
                            steps=2)
    g0 = {k: v.detach().clone() for k, v in trainer.update.generator.named_parameters()}
    d0 = {k: v.detach().clone() for k, v in trainer.update.discriminator.named_parameters()}
    assert trainer.run() == 2

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor([row["d_loss"], row["g_loss"]])).all() for row in rows)
    for before, network in ((g0, trainer.update.generator), (d0, trainer.update.discriminator)):
        changed = [k for k, v in network.named_parameters() if not torch.equal(before[k], v.detach())]
        assert len(changed) > len(before) // 2, changed

    restored = restore(run)
    assert restored.step == 2 and restored.uses_ema
    ema = dict(trainer.update.ema.named_parameters())
    for key, value in restored.generator.named_parameters():
        assert torch.equal(value, ema[key]), key
    z = torch.randn(3, restored.assembly.loaded.blueprint.generator.latent_dim)  # whole z; G splits it
    with torch.no_grad():
        images = restored.generator(z, torch.tensor([0, 1, 3]))
    assert images.shape == (3, 3, 16, 16) and torch.isfinite(images).all() and images.abs().max() <= 1
