"""Shipped reference blueprints: they assemble, cite their source and numbers, and say what the source does.

Also the pieces they need: leaky ReLU in the discriminator's residual blocks and head, and
unconditional training on a flat image folder.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize
from PIL import Image

from ganforge.assembly import assemble
from ganforge.components.blocks.heads import ProjectionOutput
from ganforge.components.blocks.resblocks import DownResBlock
from ganforge.blueprint.validation import load_blueprint
from ganforge.errors import GanforgeError
from ganforge.registry import default_registry
from ganforge.engine.planning import plan_training
from support import BLUEPRINTS, TINY

SHIPPED = sorted(p.name for p in BLUEPRINTS.glob("*.yaml"))
# Blueprints that reproduce a published system (tiny.yaml and benchmark blueprints are not such systems).
REFERENCE = ["dcgan_baseline.yaml", "sagan_cifar10.yaml", "sagan_faces128.yaml", "sagan_imagenet128.yaml",
             "sagan_imagenet128_feat64.yaml", "sagan_imagenet128_no_attention.yaml",
             "sngan_projection_imagenet128.yaml", "sngan_cifar10.yaml", "wgan_gp_cifar10.yaml",
             "biggan_imagenet128.yaml", "biggan_cifar10.yaml", "lsgan_cifar10.yaml", "acgan_cifar10.yaml",
             "contragan_cifar10.yaml", "stylegan2_cifar10.yaml", "stylegan2_ada_cifar10.yaml",
             "stylegan2_paper256.yaml", "diffaugment_biggan_cifar10.yaml", "lecam_biggan_cifar10.yaml",
             "lecam_diffaugment_biggan_cifar10.yaml"]
SOURCE = re.compile(r"github [\w.-]+/[\w.-]+|arXiv \d{4}\.\d{4,5}")
NUMBERS = re.compile(r"(IS|FID|Inception score|accuracy)[^\n]{0,40}\d+\.\d+|\d+\.\d+[^\n]{0,12}(IS|FID|accuracy)"
                     r"|no FID or IS")
FLAT_TRAIN = ["--device", "cpu", "--steps", "2", "--set", "train.batch_size=4", "--set", "train.num_workers=0",
              "--set", "train.log_every=1", "--set", "train.sample_every=1000", "--set", "train.checkpoint_every=2"]


def header(name: str) -> str:
    lines = (BLUEPRINTS / name).read_text().splitlines()
    return "\n".join(line for line in lines[:next(i for i, l in enumerate(lines) if not l.startswith("#"))])


def resolved(name: str, *overrides: str):
    loaded = load_blueprint(BLUEPRINTS / name, list(overrides))
    registry = default_registry()
    return assemble(loaded, registry), plan_training(loaded, registry)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_blueprint_assembles(cli, name):
    result = cli("inspect", BLUEPRINTS / name)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("name", REFERENCE)
def test_every_reference_header_names_its_source_and_numbers(name):
    assert name in SHIPPED
    text = header(name)
    assert SOURCE.search(text), f"{name}: the header names no repository or arXiv id"
    assert NUMBERS.search(text), f"{name}: the header states no reported numbers"


def test_sngan_projection_follows_the_released_recipe():
    assembly, plan = resolved("sngan_projection_imagenet128.yaml")
    g_sn = [layer.settings["spectral_norm"] for layer in assembly.generator.layers if "spectral_norm" in layer.settings]
    d_sn = [layer.settings["spectral_norm"] for layer in assembly.discriminator.layers]
    assert g_sn and not any(g_sn)  # no spectral norm anywhere in G
    assert all(d_sn)
    for role in ("generator", "discriminator"):
        settings = plan.optimizers[role].settings
        assert settings["lr"] == pytest.approx(2e-4) and tuple(settings["betas"]) == (0.0, 0.9)
    assert plan.d_steps == 5 and plan.ema_decay is None
    assert not assembly.generator.attention and not assembly.discriminator.attention
    downs = [layer for layer in assembly.discriminator.layers if layer.component == "down_resblock"]
    assert [layer.output_shape[0] for layer in downs] == [64, 128, 256, 512, 1024, 1024]
    # dis_models/resblocks.py: the hidden width of a block is its input width
    assert [layer.settings.get("hidden_channels") for layer in downs[1:]] == [64, 128, 256, 512, 1024]
    bp = assembly.loaded.blueprint
    assert (bp.train.batch_size, bp.train.steps, bp.data.settings["flip"]) == (64, 450_000, False)


def test_no_attention_ablation_keeps_sagan_training():
    ablation, ablation_plan = resolved("sagan_imagenet128_no_attention.yaml")
    sagan, sagan_plan = resolved("sagan_imagenet128.yaml")
    assert not ablation.generator.attention and not ablation.discriminator.attention
    assert ablation_plan.optimizers["generator"].settings == sagan_plan.optimizers["generator"].settings
    assert ablation_plan.optimizers["discriminator"].settings == sagan_plan.optimizers["discriminator"].settings
    assert ablation_plan.d_steps == sagan_plan.d_steps == 1


def test_feat64_places_attention_at_64_in_both_networks():
    assembly, _ = resolved("sagan_imagenet128_feat64.yaml")
    assert [(a.output_shape[1], a.output_shape[0]) for a in assembly.generator.attention] == [(64, 128)]
    assert [(a.output_shape[1], a.output_shape[0]) for a in assembly.discriminator.attention] == [(64, 64)]
    canonical, _ = resolved("sagan_imagenet128.yaml")
    assert [a.output_shape[1] for a in canonical.generator.attention] == [32]


def test_cifar10_follows_studiogan_training():
    assembly, plan = resolved("sagan_cifar10.yaml")
    for role in ("generator", "discriminator"):
        settings = plan.optimizers[role].settings
        assert settings["lr"] == pytest.approx(2e-4) and tuple(settings["betas"]) == (0.5, 0.999)
        assert settings["eps"] == pytest.approx(1e-6)
    assert plan.d_steps == 5 and plan.ema_decay is None
    bp = assembly.loaded.blueprint
    assert bp.generator.init.type == bp.discriminator.init.type == "orthogonal"
    assert (bp.train.batch_size, bp.train.steps, bp.data.settings["flip"]) == (64, 100_000, True)


def test_cifar10_discriminator_is_studiogans_with_its_activated_shortcut():
    """StudioGAN's SAGAN networks built from its code (947b35e, src/configs/CIFAR10/SAGAN.yaml) count
    G 4,386,308 and D 1,075,586 parameters; its D block's in-place ReLU feeds the shortcut ReLU(x)."""
    assembly, _ = resolved("sagan_cifar10.yaml")
    assert (assembly.generator.params, assembly.discriminator.params) == (4_386_308, 1_075_586)
    blocks = [layer for layer in assembly.discriminator.layers if layer.kind == "block"]
    assert [layer.component for layer in blocks] == ["studiogan_down_resblock"] * 4
    assert all(layer.settings["batch_norm"] is False and layer.settings["activated_shortcut"] is None
               for layer in blocks)  # None: activated exactly when there is no batch norm, as StudioGAN
    block = next(m for m in assembly.discriminator.build("cpu").layers
                 if getattr(m, "learnable_shortcut", False) and not getattr(m, "optimized", True))
    seen = []
    handle = block.shortcut_bn.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    x = torch.randn(2, 128, 16, 16)
    with torch.no_grad():
        block(x)
    handle.remove()
    assert torch.equal(seen[0], F.avg_pool2d(x.relu(), 2)) or torch.equal(seen[0], x.relu())


def test_dcgan_has_no_flip_and_trains_in_fp32():
    assembly, plan = resolved("dcgan_baseline.yaml")
    bp = assembly.loaded.blueprint
    assert bp.data.settings["flip"] is False and bp.train.precision == "fp32" and bp.train.batch_size == 128
    assert plan.optimizers["generator"].settings["betas"][0] == 0.5
    assert all(layer.settings["negative_slope"] == 0.2 for layer in assembly.discriminator.layers
               if layer.component == "dcgan_down")


def test_faces_blueprint_follows_the_tf_eager_code():
    """github sthalles/blog-resources (941a026), sagan/: leaky slope --alpha 0.1 (train_celeb_faces.py:22);
    G's fc1 a plain Dense (celeb/model.py:11); D's SN Dense unnormalised on its flattened 2-D input
    (libs/convolutions.py:139-151); attention with biases and no output conv (libs/self_attention.py);
    600,000 counted steps of two optimisers each (train_celeb_faces.py:28, :130-134) = 300,000 updates."""
    assembly, plan = resolved("sagan_faces128.yaml")
    bp = assembly.loaded.blueprint
    assert bp.data.num_classes == 0 and bp.data.settings["flip"] is False
    d_layers = [layer for layer in assembly.discriminator.layers if layer.component != "self_attention"]
    assert all(layer.settings["leaky_slope"] == 0.1 for layer in d_layers)  # blocks and head
    assert d_layers[-1].settings["projection"] is False and d_layers[-1].settings["spectral_norm"] is False
    assert all(layer.settings["spectral_norm"] for layer in d_layers[:-1])
    g_layers = [layer for layer in assembly.generator.layers if "spectral_norm" in layer.settings]
    assert g_layers[0].component == "linear_stem" and g_layers[0].settings["spectral_norm"] is False
    assert all(layer.settings["spectral_norm"] for layer in g_layers[1:])
    for attention in (*assembly.generator.attention, *assembly.discriminator.attention):
        assert attention.output_shape[1] == 32 and attention.output_shape[0] == 64
        assert (attention.settings["pooled"], attention.settings["output_conv"], attention.settings["bias"]) == (
            False, False, True)
    assert plan.optimizers["generator"].settings["lr"] == pytest.approx(1e-4)
    assert plan.optimizers["discriminator"].settings["lr"] == pytest.approx(4e-4)
    assert (bp.train.steps, bp.train.log_every, bp.train.sample_every, bp.train.checkpoint_every) == (
        300_000, 250, 1000, 10_000)
    network = assembly.generator.build("meta", initialise=False)
    assert not any("class_gain" in name for name, _ in network.named_parameters())
    stem = next(m for m in network.modules() if type(m).__name__ == "LinearStem")
    assert not parametrize.is_parametrized(stem.linear)


# --- leaky ReLU in the discriminator ------------------------------------------------------------

def _conv(conv, x):
    return F.conv2d(x, conv.weight.detach(), conv.bias.detach(), padding=conv.padding)


def _pool2(x):
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def _leaky(x, slope):
    return torch.where(x >= 0, x, slope * x)


@pytest.mark.parametrize("optimized", [False, True])
def test_down_resblock_applies_the_leaky_slope(optimized):
    torch.manual_seed(0)
    block = DownResBlock(in_channels=3, in_size=8, channels=5, optimized=optimized, leaky_slope=0.2,
                         spectral_norm=False)
    x = torch.randn(2, 3, 8, 8)
    h = x if optimized else _leaky(x, 0.2)
    h = _pool2(_conv(block.conv2, _leaky(_conv(block.conv1, h), 0.2)))
    skip = _conv(block.shortcut, _pool2(x)) if optimized else _pool2(_conv(block.shortcut, x))
    with torch.no_grad():
        assert torch.allclose(block(x), h + skip, atol=1e-5)
        relu = DownResBlock(in_channels=3, in_size=8, channels=5, optimized=optimized, spectral_norm=False)
        relu.load_state_dict(block.state_dict())
        assert not torch.allclose(relu(x), block(x), atol=1e-3)  # slope 0 is a plain ReLU, not the same


def test_down_resblock_hidden_width():
    block = DownResBlock(in_channels=4, in_size=8, channels=6, hidden_channels=4, spectral_norm=False)
    assert block.conv1.out_channels == 4 and block.conv2.in_channels == 4 and block.conv2.out_channels == 6


def test_projection_output_applies_the_leaky_slope():
    torch.manual_seed(0)
    head = ProjectionOutput(in_channels=4, leaky_slope=0.1, projection=False, spectral_norm=False)
    x = torch.randn(3, 4, 2, 2)
    expected = _leaky(x, 0.1).sum(dim=(2, 3)) @ head.linear.weight.detach().T + head.linear.bias.detach()
    with torch.no_grad():
        assert torch.allclose(head(x), expected, atol=1e-5)


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_leaky_slope_is_validated(cli, value):
    result = cli("inspect", TINY, "--set", f"discriminator.blocks.0.leaky_slope={value}")
    assert result.exit_code == 2
    assert "leaky_slope" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --- flat image folders ---------------------------------------------------------------------------

def flat_folder(root, n: int = 8):
    root.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (20, 18), (30 * i, 255 - 30 * i, 90)).save(root / f"face{i:03d}.png")
    (root / ".ganforge_stats").mkdir()  # a hidden folder, e.g. cached FID statistics: never a class
    Image.new("RGB", (20, 18)).save(root / ".ganforge_stats" / "x.png")
    Image.new("RGB", (20, 18)).save(root / "._face000.png")  # a hidden file (macOS resource fork)
    return root


def build(**settings):
    return default_registry().get("dataset", "imagefolder").build(settings)


def test_flat_folder_is_read_unconditionally(tmp_path):
    data = build(root=str(flat_folder(tmp_path / "faces")), resolution=8, num_classes=0, flip=False)
    assert len(data) == 8
    assert {int(data[i][1]) for i in range(len(data))} == {0}
    assert data[0][0].shape == (3, 8, 8)


def test_hidden_folders_are_never_classes(tmp_path):
    root = tmp_path / "train"
    for name in ("cat", "dog", ".ganforge_stats"):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / name / "0.png")
    data = build(root=str(root), resolution=8, num_classes=2)
    assert data.classes == ["cat", "dog"] and len(data) == 2


def test_conditional_dataset_on_a_flat_folder_says_how_to_train_unconditionally(tmp_path):
    with pytest.raises(GanforgeError, match=r"--set data.num_classes=0"):
        build(root=str(flat_folder(tmp_path / "faces")), resolution=8, num_classes=10)


def test_unconditional_training_on_a_flat_folder(cli, tmp_path):
    root = flat_folder(tmp_path / "faces")
    out = tmp_path / "run"
    result = cli("train", TINY, "--out", out, *FLAT_TRAIN,
                 "--set", f"data={{type: imagefolder, root: {root}, resolution: 16, num_classes: 0}}")
    assert result.exit_code == 0, result.stderr
    assert (out / "checkpoints" / f"step-{2:09d}.pt").exists()


def test_conditional_blueprint_on_a_flat_folder_exits_2_naming_num_classes(cli, tmp_path):
    root = flat_folder(tmp_path / "faces")
    result = cli("train", TINY, "--out", tmp_path / "run", *FLAT_TRAIN,
                 "--set", f"data={{type: imagefolder, root: {root}, resolution: 16, num_classes: 4}}")
    assert result.exit_code == 2
    message = result.stderr.strip().splitlines()
    assert len(message) == 1 and "num_classes" in message[0] and "--set data.num_classes=0" in message[0]
