"""DiffAugment and LeCam on BigGAN-CIFAR-10: the three blueprints against their authors' scripts.

* blueprints/diffaugment_biggan_cifar10.yaml: github mit-han-lab/data-efficient-gans (commit 0b63395),
  DiffAugment-biggan-cifar/scripts/DiffAugment-biggan-cifar10.sh.
* blueprints/lecam_biggan_cifar10.yaml: github google/lecam-gan (commit f9af948),
  biggan_cifar/scripts/lc-biggan-cifar10.sh.
* blueprints/lecam_diffaugment_biggan_cifar10.yaml: the same repository, lc-DiffAugment-biggan-cifar10.sh.

Reference parameter counts, G 4,304,387 and D 4,207,361 for all three: built in a scratch directory
outside this repository from each repository's own files (data-efficient-gans: BigGAN.py, layers.py,
DiffAugment_pytorch.py, utils.py, datasets.py; lecam-gan: third_party/ likewise), each script's command line
parsed by that repository's ``utils.prepare_parser``, the config completed as train.py:42-45 (run_train.py:43-46)
completes it, and ``BigGAN.Generator(**config)`` / ``BigGAN.Discriminator(**config)`` built on the meta device
(``skip_init``), counted as train.py:95-96 prints them (sum of ``p.nelement()`` over ``parameters()``).
They equal BigGAN-PyTorch's for launch_cifar_ema.sh (tests/test_family_biggan.py): both repositories'
BigGAN.py and layers.py are BigGAN-PyTorch's re-indented (equal syntax trees for every function these
scripts use) and their utils.py defaults for the networks are the same. DiffAugment has no parameters.

Checked by hand outside the repository (figures in the blueprints' headers): the repositories'
DiffAugment() against ganforge's ``diff_augment`` (one seed, identical images) and lecam-gan's ema_losses +
lecam_reg against ganforge's ``lecam`` (identical penalties and averages). Here: the settings each
blueprint claims, where the augmentation sits, and two CPU training steps of each at a tiny size that
restore from their checkpoint, LeCam's averages included.
"""

from __future__ import annotations

import json

import pytest
import torch

from ganforge.assembly import assemble
from ganforge.blueprint.validation import load_blueprint
from ganforge.components.layers.diffaugment import DiffAugment
from ganforge.components.losses.lecam import LeCam
from ganforge.engine.planning import plan_training
from ganforge.registry import default_registry
from support import BLUEPRINTS

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

DIFFAUG = "diffaugment_biggan_cifar10.yaml"
LECAM = "lecam_biggan_cifar10.yaml"
LECAM_DIFFAUG = "lecam_diffaugment_biggan_cifar10.yaml"
ALL = [DIFFAUG, LECAM, LECAM_DIFFAUG]
AUGMENTED = {DIFFAUG: True, LECAM: False, LECAM_DIFFAUG: True}
WITH_LECAM = {DIFFAUG: False, LECAM: True, LECAM_DIFFAUG: True}

# (G, D) of each repository's BigGAN built from its script's parsed command line (module docstring)
REFERENCE_COUNTS = {DIFFAUG: (4_304_387, 4_207_361), LECAM: (4_304_387, 4_207_361),
                    LECAM_DIFFAUG: (4_304_387, 4_207_361)}

# biggan_cifar10's tiny size (tests/test_family_biggan.py): 16×16, narrow layers, batch 4, 4 D steps kept
TINY = [
    "data={type: procedural, resolution: 16, num_classes: 4, size: 64}", "generator.latent_dim=16",
    "generator.stem={type: linear_stem, channels: 16, size: 4}",
    "generator.blocks=[{type: up_resblock, channels: 16}, {type: up_resblock, channels: 16}]",
    ("discriminator.blocks=[{type: down_resblock, channels: 16, optimized: true}, "
     "{type: down_resblock, channels: 16}, {type: down_resblock, channels: 16, downsample: false}]"),
    "train.batch_size=4", "train.num_workers=0", "train.log_every=1", "train.sample_every=1000",
    "train.checkpoint_every=2",
]
# LeCam's penalty starts after step 1000; in two steps it would stay 0. The +DiffAugment run starts it at 0
# (from an average of 0) so the penalty itself runs inside the engine; the plain LeCam run keeps the
# blueprint's start and checks the copying phase.
ACTIVE_LECAM = "regularizers=[{type: lecam, weight: 0.3, decay: 0.9, start: 0, initial: 0.0}]"
TINY_OVERRIDES = {DIFFAUG: TINY, LECAM: TINY, LECAM_DIFFAUG: [*TINY, ACTIVE_LECAM]}


def resolved(name: str, *overrides: str):
    loaded = load_blueprint(BLUEPRINTS / name, list(overrides))
    registry = default_registry()
    return assemble(loaded, registry), plan_training(loaded, registry)


# -- parameters --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_parameter_counts_equal_the_reference_scripts(name):
    assembly, _ = resolved(name)
    assert (assembly.generator.params, assembly.discriminator.params) == REFERENCE_COUNTS[name]


@pytest.mark.parametrize("name", ALL)
def test_networks_are_biggan_cifar10s_with_diffaugment_first_in_d(name):
    """Every G layer and every D layer after the augmenter equal biggan_cifar10's (component, settings, shape,
    parameters); the augmenter adds none."""
    assembly, _ = resolved(name)
    base, _ = resolved("biggan_cifar10.yaml")

    def rows(layers):
        return [(x.component, x.settings, x.output_shape, x.params) for x in layers]

    assert rows(assembly.generator.layers) == rows(base.generator.layers)
    d_layers = list(assembly.discriminator.layers)
    if AUGMENTED[name]:
        first = d_layers.pop(0)
        assert first.component == "diff_augment" and first.params == 0 and first.output_shape == (3, 32, 32)
    assert rows(d_layers) == rows(base.discriminator.layers)
    assert not any(x.component == "diff_augment" for x in d_layers + list(assembly.generator.layers))


# -- the settings each blueprint claims ---------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_trains_as_its_script(name):
    """Shared by the three scripts: --batch_size 50, --num_D_steps 4, --G_lr/--D_lr 2e-4, betas (0, 0.999) and
    Adam eps 1e-8 (utils.py defaults), --ema_start 1000 (decay 0.9999), --G_ortho 0, no attention, N02 init,
    --mirror_augment, 1000 epochs of the multi-epoch sampler = 250,000 steps, seed 0."""
    assembly, plan = resolved(name)
    bp = assembly.loaded.blueprint
    for role in ("generator", "discriminator"):
        settings = plan.optimizers[role].settings
        assert settings["lr"] == 2e-4 and tuple(settings["betas"]) == (0.0, 0.999) and settings["eps"] == 1e-8
    assert (plan.d_steps, plan.ema_decay, plan.ema_start) == (4, 0.9999, 1000)
    assert (bp.train.batch_size, bp.train.grad_accumulation, bp.train.steps) == (50, 1, 250_000)
    assert bp.train.precision == "fp32" and bp.train.seed == 0
    assert bp.data.settings["flip"] is True and bp.data.resolution == 32 and bp.data.num_classes == 10
    assert bp.loss.type == "hinge"
    assert not assembly.generator.attention and not assembly.discriminator.attention
    for network in (assembly.generator, assembly.discriminator):
        assert network.init[0].name == "normal" and network.init[1] == {"std": 0.02}
    types = [r.type for r in bp.regularizers]
    assert types == (["lecam"] if WITH_LECAM[name] else [])  # and no orthogonal regularisation


@pytest.mark.parametrize("name", [DIFFAUG, LECAM_DIFFAUG])
def test_diffaugment_policy_is_the_scripts(name):
    """--DiffAugment translation,cutout (not colour), DiffAugment_pytorch.py's ratios 0.125 and 0.5."""
    assembly, _ = resolved(name)
    first = assembly.discriminator.layers[0]
    assert first.settings["policy"] == "translation,cutout"
    assert (first.settings["translation_ratio"], first.settings["cutout_ratio"]) == (0.125, 0.5)
    module = assembly.discriminator.build("cpu")
    augmenters = [m for m in module.modules() if isinstance(m, DiffAugment)]
    assert len(augmenters) == 1 and augmenters[0].policy == ("translation", "cutout")


@pytest.mark.parametrize("name", [LECAM, LECAM_DIFFAUG])
def test_lecam_settings_are_the_references(name):
    """--LC 0.3 (script line 16); ema_losses(init=1000., decay=0.9) (third_party/utils.py:638) with
    start_itr=1000 (biggan_cifar/train.py:28)."""
    assembly, _ = resolved(name)
    (spec,) = assembly.loaded.blueprint.regularizers
    assert spec.type == "lecam" and spec.settings == {"weight": 0.3, "decay": 0.9, "start": 1000, "initial": 1000.0}
    assert spec.every == 1  # every D update, as train_fns.py:59-61


# -- two training steps on the CPU, then restore ---------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_two_cpu_steps_train_and_restore(tmp_path, monkeypatch, name):
    from ganforge.engine.build import build_trainer
    from ganforge.engine.distributed import place_process
    from ganforge.engine.restore import restore

    augmented: list[tuple[int, bool]] = []
    forward = DiffAugment.forward

    def seen(self, x):
        out = forward(self, x)
        if not x.is_meta:
            augmented.append((x.shape[0], self.training))
        return out

    monkeypatch.setattr(DiffAugment, "forward", seen)
    lecam_calls: list[dict] = []
    call = LeCam.__call__

    def recorded(self, *, step, real_outputs, fake_outputs):
        before = (self.real_mean, self.fake_mean)
        value = call(self, step=step, real_outputs=real_outputs, fake_outputs=fake_outputs)
        lecam_calls.append({"step": step, "before": before, "real": real_outputs.logit.detach().clone(),
                            "fake": fake_outputs.logit.detach().clone(), "value": float(value.detach()),
                            "grad": value.requires_grad})
        return value

    monkeypatch.setattr(LeCam, "__call__", recorded)

    run = tmp_path / "run"
    trainer = build_trainer(str(BLUEPRINTS / name), overrides=TINY_OVERRIDES[name],
                            placement=place_process("cpu"), out=run, steps=2)
    update = trainer.update
    assert update.joint_d_pass  # real and generated images in one D pass, as G_D.forward (no BN in D)
    g0 = {k: v.detach().clone() for k, v in update.generator.named_parameters()}
    d0 = {k: v.detach().clone() for k, v in update.discriminator.named_parameters()}
    assert trainer.run() == 2

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor([row["d_loss"], row["g_loss"]])).all() for row in rows)
    for before, network in ((g0, update.generator), (d0, update.discriminator)):
        changed = [k for k, v in network.named_parameters() if not torch.equal(before[k], v.detach())]
        assert len(changed) > len(before) // 2, changed

    if AUGMENTED[name]:
        # per step: 4 D updates of one joint pass (4 real + 4 generated), then G's pass of 4 generated images
        assert augmented == ([(8, True)] * 4 + [(4, True)]) * 2
    else:
        assert augmented == []

    restored = restore(run)
    assert restored.step == 2 and restored.uses_ema
    ema = dict(update.ema.named_parameters())
    for key, value in restored.generator.named_parameters():
        assert torch.equal(value, ema[key]), key
    with torch.no_grad():
        images = restored.generator(torch.randn(3, 16), torch.tensor([0, 1, 3]))
    assert images.shape == (3, 3, 16, 16) and torch.isfinite(images).all()

    if not WITH_LECAM[name]:
        assert not lecam_calls and "regularizers[0]" not in (restored.record.components or [{}])[0]
        return
    # once per D update (4 per step), with the engine's step: steps taken before this one, from 0
    assert [c["step"] for c in lecam_calls] == [0] * 4 + [1] * 4
    reg = update.regularizers[0].regularizer
    settings = reg.weight, reg.decay, reg.start
    real_mean = fake_mean = lecam_calls[0]["before"][0]
    for c in lecam_calls:  # the reference's ema_losses.update and lecam_reg, written out
        decay = settings[1] if c["step"] >= settings[2] else 0.0
        real_mean = real_mean * decay + float(c["real"].mean()) * (1 - decay)
        fake_mean = fake_mean * decay + float(c["fake"].mean()) * (1 - decay)
        expected = 0.0
        if c["step"] > settings[2]:
            expected = settings[0] * (torch.relu(c["real"] - fake_mean).pow(2).mean()
                                      + torch.relu(real_mean - c["fake"]).pow(2).mean()).item()
            assert c["grad"]  # the penalty reaches D's parameters
        assert c["value"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert (reg.real_mean, reg.fake_mean) == pytest.approx((real_mean, fake_mean), rel=1e-12)
    if name == LECAM:  # start 1000: the penalty is 0 and the averages are the last micro-batch's means
        assert {c["value"] for c in lecam_calls} == {0.0}
        assert reg.real_mean == pytest.approx(float(lecam_calls[-1]["real"].mean()))
    else:
        assert any(c["value"] > 0 for c in lecam_calls[4:])
    # the averages are in the checkpoint, under the regulariser's blueprint key
    assert restored.record.components[0]["regularizers[0]"] == reg.state_dict()
