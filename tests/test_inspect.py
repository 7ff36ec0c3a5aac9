"""`ganforge inspect` and assembly: inferred shapes, attention placement, labels, no real weights."""

from __future__ import annotations

import json
import time

import torch

from ganforge.assembly import assemble
from ganforge.blueprint.validation import load_blueprint
from support import BLUEPRINTS, TINY


def inspect_json(cli, *args):
    result = cli("inspect", *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_sagan_imagenet128_has_the_official_layout(cli):
    start = time.perf_counter()
    report = inspect_json(cli, BLUEPRINTS / "sagan_imagenet128.yaml")
    assert time.perf_counter() - start < 30
    g, d = report["generator"], report["discriminator"]
    shapes = [tuple(layer["output_shape"]) for layer in g["layers"]]
    assert shapes[0] == (1024, 4, 4)
    ups = [layer for layer in g["layers"] if layer["component"] == "up_resblock"]
    assert [tuple(u["output_shape"]) for u in ups] == [(1024, 8, 8), (512, 16, 16), (256, 32, 32),
                                                        (128, 64, 64), (64, 128, 128)]
    assert g["attention"] == [{"index": 4, "resolution": 32, "channels": 256}]
    assert shapes[-1] == (3, 128, 128)
    downs = [tuple(layer["output_shape"]) for layer in d["layers"] if layer["component"] == "down_resblock"]
    assert downs == [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8), (1024, 4, 4), (1024, 4, 4)]
    assert d["attention"] == [{"index": 2, "resolution": 32, "channels": 128}]
    assert d["output_shape"] == [1]
    for net in (g, d):
        assert net["params"] == sum(layer["params"] for layer in net["layers"]) > 10_000_000
        assert all(set(layer) >= {"index", "component", "output_shape", "params"} for layer in net["layers"])
    assert report["loss"]["type"] == "hinge"
    assert report["optimizers"]["generator"]["lr"] == 1e-4
    assert report["optimizers"]["discriminator"]["lr"] == 4e-4
    assert report["optimizers"]["discriminator"]["betas"] == [0.0, 0.999]
    assert report["update_rule"]["d_steps_per_g_step"] == 1
    assert report["data"]["type"] == "imagefolder" and report["data"]["num_classes"] == 1000


def test_text_report_mentions_everything(cli):
    result = cli("inspect", BLUEPRINTS / "sagan_imagenet128.yaml")
    assert result.exit_code == 0
    out = result.stdout
    for phrase in ["generator: input 128 → output 3×128×128", "attention: layer 4 at 32×32, 256 channels",
                   "loss: hinge", "ttur(g_lr=0.0001, d_lr=0.0004", "optimizer (discriminator): adam(lr=0.0004",
                   "data: imagefolder("]:
        assert phrase in out, phrase


def test_attention_removed_in_sngan_baseline(cli):
    report = inspect_json(cli, BLUEPRINTS / "sngan_projection_imagenet128.yaml")
    assert report["generator"]["attention"] == [] and report["discriminator"]["attention"] == []


def test_param_counts_match_a_real_build():
    assembly = assemble(load_blueprint(TINY))
    for plan in (assembly.generator, assembly.discriminator):
        real = plan.build("cpu")
        assert sum(p.numel() for p in real.parameters()) == plan.params
        assert all(p.device.type == "cpu" for p in real.parameters())


def test_inspection_allocates_no_weights(monkeypatch):
    assembly = assemble(load_blueprint(BLUEPRINTS / "sagan_imagenet128.yaml"))
    meta = assembly.generator.build("meta")
    assert all(p.is_meta for p in meta.parameters())


def test_labels_reach_every_component_that_takes_them():
    assembly = assemble(load_blueprint(TINY))
    generator = assembly.generator.build("cpu")
    discriminator = assembly.discriminator.build("cpu")
    wants = [layer.component for layer in assembly.generator.layers if layer.takes_labels]
    assert wants.count("up_resblock") == 2
    assert any(layer.takes_labels for layer in assembly.discriminator.layers if layer.component == "projection_output")
    seen = []
    for module, name in zip(generator.layers, generator.names):
        module.register_forward_pre_hook(lambda m, args, kwargs, name=name: seen.append((name, len(args))),
                                         with_kwargs=True)
    z = torch.randn(2, 32)
    labels = torch.tensor([0, 3])
    images = generator(z, labels)
    assert ("up_resblock", 2) in seen and ("linear_stem", 1) in seen
    assert images.shape == (2, 3, 16, 16)
    # Different classes give different images from the same noise: the labels are used.
    other = generator(z, torch.tensor([1, 2]))
    assert not torch.allclose(images, other)
    assert discriminator(images, labels).shape == (2, 1)


def test_defaults_reach_components_but_explicit_settings_win(write):
    path = write("d.yaml", f"extends: {TINY}\ngenerator:\n  defaults: {{sn_eps: 1.0e-6}}\n"
                           "  head: {type: image_output, channels: 3, sn_eps: 1.0e-3}\n")
    assembly = assemble(load_blueprint(path))
    eps = {layer.component: layer.settings.get("sn_eps") for layer in assembly.generator.layers}
    assert eps["up_resblock"] == 1e-6 and eps["image_output"] == 1e-3


def test_unused_default_is_an_error(cli, write):
    path = write("d.yaml", f"extends: {TINY}\ngenerator:\n  defaults: {{no_such_setting: 1}}\n")
    result = cli("inspect", path)
    assert result.exit_code == 2 and "generator.defaults.no_such_setting" in result.stderr


def test_every_shipped_blueprint_assembles(cli):
    for path in sorted(BLUEPRINTS.glob("*.yaml")):
        report = inspect_json(cli, path)
        assert report["discriminator"]["output_shape"] == [1], path.name
        assert report["generator"]["output_shape"][1] == report["data"]["resolution"], path.name


def test_dcgan_baseline_has_no_attention_and_no_residual_blocks(cli):
    report = inspect_json(cli, BLUEPRINTS / "dcgan_baseline.yaml")
    names = [layer["component"] for net in ("generator", "discriminator") for layer in report[net]["layers"]]
    assert not any("attention" in n or "resblock" in n for n in names)
    assert report["generator"]["output_shape"] == [3, 32, 32]
