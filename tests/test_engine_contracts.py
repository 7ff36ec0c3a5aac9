"""The engine's component contracts end to end (issue 19), each on a tiny blueprint trained on the CPU.

Lazy regularisers, named discriminator outputs, requirements and controllers with exact resume,
conditioning context through G, the legacy-loss adapter, parameter groups, G regularisers with
state, feedback, and normalisations found by capability. Numbers are checked against hand
formulas or a second run, not against the engine's own arithmetic. The test components live
here and are added to a fresh ``Registry`` (never the global one).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import nn

from support import assert_clean_failure

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = (Path(__file__).parent / "fixtures" / "contracts" / "small.yaml").resolve()
STYLED = (Path(__file__).parent / "fixtures" / "contracts" / "styled.yaml").resolve()
BIGGAN = (Path(__file__).parent / "fixtures" / "contracts" / "biggan.yaml").resolve()
ADA_D = ("discriminator.blocks=[{type: ada_augment}, {type: down_resblock, channels: 8, optimized: true}, "
         "{type: down_resblock, channels: 8, downsample: false}]")


# ---------------------------------------------------------------------------------------------
# Test components (added to a fresh registry by the ``custom`` fixture)
# ---------------------------------------------------------------------------------------------


class Styled(nn.Module):
    """A consumer of the ``style`` context entry: adds a per-channel offset linear in its style."""

    def __init__(self, *, in_channels: int, style_dim: int = 0) -> None:
        super().__init__()
        self.style_dim = style_dim
        self.affine = nn.Linear(style_dim, in_channels)
        self.received: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, *, style: torch.Tensor | None = None) -> torch.Tensor:
        self.received = style.detach().clone()
        return x + self.affine(style)[:, :, None, None]


class FeedbackProbe(nn.Module):
    """An identity layer that records what the engine's feedback gives it after every step."""

    def __init__(self, *, in_channels: int) -> None:
        super().__init__()
        self.seen: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def feedback(self, *, step: int, losses, real) -> None:
        self.seen.append({"step": step, "losses": dict(losses), "real": real})


class BatchMean(nn.Module):
    """Subtracts the batch's per-channel mean (running mean in eval mode): batch statistics, no BatchNorm."""

    batch_statistics = True

    def __init__(self, *, in_channels: int) -> None:
        super().__init__()
        self.momentum: float | None = 0.1
        self.register_buffer("running_mean", torch.zeros(in_channels))
        self.register_buffer("tracked", torch.zeros((), dtype=torch.long))
        self.resets = 0

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.tracked.zero_()
        self.resets += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x - self.running_mean[:, None, None]
        mean = x.mean(dim=(0, 2, 3))
        with torch.no_grad():
            self.tracked += 1
            weight = 1.0 / float(self.tracked) if self.momentum is None else self.momentum
            self.running_mean.lerp_(mean.detach(), weight)
        return x - mean[:, None, None]


class LegacyHinge:
    """The hinge loss written against the earlier, logits-only loss contract."""

    def __init__(self) -> None:
        pass

    def discriminator_loss(self, *, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return torch.relu(1.0 - real_logits).mean() + torch.relu(1.0 + fake_logits).mean()

    def generator_loss(self, *, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()


class Cue(nn.Module):
    """A context producer that needs the ada controller beside it (a requirement declared by a producer)."""

    provides: ClassVar[dict[str, str]] = {"cue": "shared"}
    requires = ("controller:ada",)

    def __init__(self, *, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, *, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"cue": z[:, :2]}


class RecordD:
    """A discriminator regulariser asking for the whole vocabulary; records it and adds nothing."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def __call__(self, *, step, labels, parameters, rng, discriminator, discriminator_outputs, real, fake):
        self.seen.append({"step": step, "labels": labels, "names": [t.name for t in parameters], "rng": rng,
                          "logits": discriminator(real), "outputs": discriminator_outputs(fake),
                          "real_grad": real.requires_grad, "fake_grad": fake.requires_grad})
        return discriminator(real).sum() * 0


class RecordG:
    """A generator regulariser asking for the whole vocabulary; records it and adds nothing."""

    network = "generator"

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def __call__(self, *, step, labels, parameters, rng, fake, generate):
        fresh = generate(3)
        self.seen.append({"step": step, "labels": labels, "tags": {t.name: t.tags for t in parameters},
                          "rng": rng, "fake_grad": fake.requires_grad, "fresh": fresh})
        return fake.sum() * 0 + fresh.images.sum() * 0


@pytest.fixture
def custom():
    from ganforge.registry import BUILTIN_PACKAGES, Registry

    registry = Registry(builtin_packages=BUILTIN_PACKAGES)
    registry.add("block", "test_styled", Styled, origin="test")
    registry.add("layer", "test_feedback_probe", FeedbackProbe, origin="test")
    registry.add("layer", "test_batch_mean", BatchMean, origin="test")
    registry.add("loss", "test_legacy_hinge", LegacyHinge, origin="test")
    registry.add("context", "test_cue", Cue, origin="test")
    registry.add("regularizer", "test_record_d", RecordD, origin="test")
    registry.add("regularizer", "test_record_g", RecordG, origin="test")
    return registry


def trainer(out: Path, *overrides: str, registry=None, blueprint: Path = SMALL, **kwargs):
    from ganforge.engine.build import build_trainer
    from ganforge.engine.distributed import place_process

    return build_trainer(str(blueprint), overrides=list(overrides), placement=place_process("cpu"), out=out,
                         registry=registry, **kwargs)


def steps(t, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = [t.train_step() for _ in range(n)]
    assert all(torch.isfinite(d) and torch.isfinite(g) for d, g in out), out
    return out


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, different[:5]


def checkpoint(run: Path, step: int) -> dict:
    return torch.load(run / "checkpoints" / f"step-{step:09d}.pt", weights_only=True)


# ---------------------------------------------------------------------------------------------
# 1. Lazy regularisation: every: N
# ---------------------------------------------------------------------------------------------


def test_lazy_r1_fires_at_steps_0_n_2n_with_its_value_times_n(tmp_path, monkeypatch):
    from ganforge.components.losses.regularizers import R1

    plain = [d for d, _ in steps(trainer(tmp_path / "plain"), 7)]

    original = R1.__call__
    calls: list[dict] = []
    run: dict = {}

    def counting(self, *, discriminator, real, fake, step):  # also asks for `step`: the engine passes it
        value = original(self, discriminator=discriminator, real=real, fake=fake)
        calls.append({"engine_step": run["t"].update.step, "given_step": step, "value": value.detach()})
        return value

    monkeypatch.setattr(R1, "__call__", counting)
    run["t"] = trainer(tmp_path / "lazy", "regularizers=[{type: r1, gamma: 1.0, every: 3}]")
    lazy = [d for d, _ in steps(run["t"], 7)]
    assert [c["engine_step"] for c in calls] == [0, 3, 6]
    assert [c["given_step"] for c in calls] == [0, 3, 6]
    # Step 0 starts from the same weights and data: the only difference in D's loss is 3 × the penalty.
    assert float(lazy[0] - plain[0]) == pytest.approx(3 * float(calls[0]["value"]), rel=1e-5, abs=1e-7)
    assert float(calls[0]["value"]) > 0

    # A constant penalty (no gradient): D's loss is the plain one plus 3 × 0.25 at steps 0, 3, 6 only.
    def constant(self, *, discriminator, real, fake):
        return torch.tensor(0.25)

    monkeypatch.setattr(R1, "__call__", constant)
    shifted = [d for d, _ in steps(trainer(tmp_path / "constant", "regularizers=[{type: r1, every: 3}]"), 7)]
    for step, (a, b) in enumerate(zip(plain, shifted)):
        if step % 3 == 0:
            assert float(b - a) == pytest.approx(0.75, abs=1e-6), step
        else:
            assert torch.equal(a, b), step


# ---------------------------------------------------------------------------------------------
# 2. Named discriminator outputs: AC-GAN
# ---------------------------------------------------------------------------------------------


def test_acgan_head_and_loss_train_and_the_loss_reads_class_logits_and_labels(tmp_path, monkeypatch):
    from ganforge.components.losses.auxiliary import ACGAN

    seen = []
    original = ACGAN.discriminator_loss

    def spy(self, *, real, fake, labels):
        seen.append({"class_logits": real.class_logits.detach(), "labels": labels})
        return original(self, real=real, fake=fake, labels=labels)

    monkeypatch.setattr(ACGAN, "discriminator_loss", spy)
    t = trainer(tmp_path, "discriminator.head={type: acgan_output}", "loss={type: acgan}")
    steps(t, 3)
    assert len(seen) == 3
    assert seen[0]["class_logits"].shape == (4, 4)  # batch × data.num_classes
    pair = seen[0]["labels"]
    assert pair.real.shape == (4,) and pair.fake.shape == (4,)
    assert pair.real.dtype == torch.long and int(pair.real.max()) < 4


def test_a_loss_reading_class_logits_is_refused_with_a_head_that_does_not_give_them(cli, tmp_path):
    from ganforge.engine.build import build_run
    from ganforge.errors import BlueprintError

    with pytest.raises(BlueprintError) as caught:
        build_run(SMALL, overrides=["loss={type: acgan}"])  # tiny's head: projection_output
    assert "acgan" in str(caught.value) and "class_logits" in str(caught.value)
    result = cli("train", SMALL, "--out", tmp_path / "run", "--device", "cpu", "--steps", "1",
                 "--set", "loss={type: acgan}")
    assert_clean_failure(result, mentions=("'acgan'", "'class_logits'", "projection_output"))
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# 3. Requirements, controllers and exact resume: ADA
# ---------------------------------------------------------------------------------------------


def test_ada_augment_without_its_controller_is_refused_naming_it(cli):
    result = cli("inspect", SMALL, "--set", ADA_D)
    assert_clean_failure(result, mentions=("ada_augment", "controller 'ada'", "controllers"))


def test_ada_controller_moves_p_from_ds_real_outputs_and_resumes_exactly(tmp_path, custom):
    from ganforge.commands.train import train

    controller = "controllers=[{type: ada, target: 0.0, interval: 3, speed_kimg: 0.1}]"
    # The probe sees the same D outputs on real images that the controller does.
    probe_d = ("discriminator.blocks=[{type: ada_augment}, {type: test_feedback_probe}, "
               "{type: down_resblock, channels: 8, optimized: true}, {type: down_resblock, channels: 8, "
               "downsample: false}]")
    fast = ["train.checkpoint_every=2"]
    t = trainer(tmp_path / "probe", probe_d, controller, registry=custom)
    steps(t, 4)
    (ada,) = t.update.controllers.values()
    probe = next(m for m in t.update.discriminator.modules() if isinstance(m, FeedbackProbe))
    signs = torch.cat([s["real"].logit.sign() for s in probe.seen[:3]])
    r_t = float(signs.mean())
    # training_loop.py 311-315: p ← max(p + sign(r_t − target) · n / (speed_kimg · 1000), 0), after step 2
    expected = max(0.0 + ((r_t > 0) - (r_t < 0)) * 12 / 100, 0.0)
    assert ada.p == pytest.approx(expected, abs=1e-12)
    assert ada.p > 0, "pick a target the tiny run crosses, so that p moves"
    augment = t.update.discriminator.layers[0]
    assert float(augment.p) == pytest.approx(ada.p)  # the controller writes the layer's buffer

    overrides = [ADA_D, controller, *fast]
    train(str(SMALL), overrides=overrides, out=str(tmp_path / "straight"), steps=4, resume=False, device="cpu",
          seed=None)
    train(str(SMALL), overrides=overrides, out=str(tmp_path / "split"), steps=2, resume=False, device="cpu",
          seed=None)
    midway = checkpoint(tmp_path / "split", 2)["components"][0]["controllers[0]"]
    assert midway["count"] == 8 and midway["p"] == 0.0  # an unfinished interval, carried by the checkpoint
    train(str(SMALL), overrides=overrides, out=str(tmp_path / "split"), steps=4, resume=True, device="cpu",
          seed=None)
    a, b = checkpoint(tmp_path / "straight", 4), checkpoint(tmp_path / "split", 4)
    assert a["components"][0]["controllers[0]"] == b["components"][0]["controllers[0]"]
    assert a["components"][0]["controllers[0]"]["p"] == pytest.approx(ada.p)
    for network in ("generator", "discriminator"):
        assert a[network].keys() == b[network].keys()
        assert all(torch.equal(a[network][k], b[network][k]) for k in a[network]), network
    assert float(a["discriminator"]["layers.0.p"]) == pytest.approx(ada.p)


# A context producer's `requires` is checked as a stack module's is (it was once skipped).
def test_a_context_producers_requirement_is_checked_too(custom):
    from ganforge.engine.build import build_run
    from ganforge.errors import BlueprintError

    with pytest.raises(BlueprintError, match="controller 'ada'"):
        build_run(SMALL, overrides=["generator.context=[{type: test_cue}]"], registry=custom)
    build_run(SMALL, overrides=["generator.context=[{type: test_cue}]", "controllers=[ada]"], registry=custom)


# ---------------------------------------------------------------------------------------------
# 4. Conditioning context through G
# ---------------------------------------------------------------------------------------------


def test_context_producer_feeds_each_consumer_its_slice_with_true_channel_counts(tmp_path, custom):
    from ganforge.commands.inspection import describe, format_text
    from ganforge.engine.build import build_run

    spec = build_run(STYLED, registry=custom)
    plan = spec.assembly.generator
    assert plan.context.consumers == {"style": 3}
    assert plan.context.entries["style"] == ("per_layer", 16)
    styled = [layer for layer in plan.layers if layer.component == "test_styled"]
    assert [layer.context for layer in styled] == [{"style": 0}, {"style": 1}, {"style": 2}]
    report = describe(spec.assembly, spec.plan)
    shapes = [layer["output_shape"] for layer in report["generator"]["layers"]]
    assert shapes == [[16, 4, 4], [16, 4, 4], [16, 4, 4], [8, 8, 8], [8, 8, 8], [3, 8, 8]]  # no style planes
    text = format_text(report)
    assert "style_mapping" in text and "style[2]" in text

    t = trainer(tmp_path, registry=custom, blueprint=STYLED)
    generator = t.update.generator
    consumers = [m for m in generator.modules() if isinstance(m, Styled)]
    assert [m.style_dim for m in consumers] == [16, 16, 16]
    assert [m.affine.in_features for m in consumers] == [16, 16, 16]
    assert generator.producers[0].num_styles == 3
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    steps(t, 2)
    after = generator.state_dict()
    assert not torch.equal(before["layers.1.affine.weight"], after["layers.1.affine.weight"])
    assert not torch.equal(before["producers.0.layers.0.weight"], after["producers.0.layers.0.weight"])

    # One pass, its context kept: consumer i received styles[:, i]; with mixing always on, the last
    # consumer's style comes from the second latent, so the slices really differ.
    z, labels, draws = t.update.draw(4)
    assert set(draws) == {"mix_z", "mix_cutoff"}
    with torch.no_grad():
        _, context = generator(z, labels, return_context=True, **draws)
    styles = context["style"]
    assert styles.shape == (4, 3, 16)
    for i, module in enumerate(consumers):
        assert torch.equal(module.received, styles[:, i]), i
    assert not torch.equal(styles[:, 0], styles[:, 2])


def test_a_consumers_entry_size_cannot_be_set_in_the_blueprint(custom):
    from ganforge.engine.build import build_run
    from ganforge.errors import BlueprintError

    with pytest.raises(BlueprintError, match="style_dim"):
        build_run(STYLED, overrides=["generator.blocks[0].style_dim=4"], registry=custom)


# ---------------------------------------------------------------------------------------------
# 5. A loss of the earlier contract, through the adapter
# ---------------------------------------------------------------------------------------------


def test_a_legacy_loss_trains_as_the_builtin_and_warns_once(tmp_path, custom, capsys):
    hinge = trainer(tmp_path / "hinge", registry=custom)
    reference = steps(hinge, 2)
    capsys.readouterr()
    legacy = trainer(tmp_path / "legacy", "loss=test_legacy_hinge", registry=custom)
    again = trainer(tmp_path / "again", "loss=test_legacy_hinge", registry=custom)  # a second build
    got = steps(legacy, 2)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "deprecated" in lines[0] and "test_legacy_hinge" in lines[0]
    assert "discriminator_loss(*, real, fake" in lines[0] and "DiscriminatorOutput" in lines[0]
    for (d0, g0), (d1, g1) in zip(reference, got):
        assert torch.equal(d0, d1) and torch.equal(g0, g1)
    assert_same_weights(hinge.update.generator, legacy.update.generator)
    assert_same_weights(hinge.update.discriminator, legacy.update.discriminator)
    assert again.update.loss is not legacy.update.loss


# ---------------------------------------------------------------------------------------------
# 6. Parameter groups
# ---------------------------------------------------------------------------------------------


def _groups(t) -> dict[str, dict]:
    return {group.get("group", ""): group for group in t.update.g_opt.param_groups}


def test_a_tagged_group_gets_its_own_learning_rate_also_under_a_schedule(tmp_path, custom):
    groups = "optimizers.generator.groups={mapping: {lr_multiplier: 0.5}}"
    t = trainer(tmp_path / "groups", groups, registry=custom, blueprint=STYLED)
    generator = t.update.generator
    found = _groups(t)
    assert set(found) == {"mapping", ""}
    mapping = found["mapping"]
    expected = sorted(n for n, _ in generator.named_parameters() if n.startswith("producers.0."))
    assert expected and sorted(mapping["param_names"]) == expected
    assert all(p is generator.get_parameter(n) for n, p in zip(mapping["param_names"], mapping["params"]))
    assert mapping["lr"] == pytest.approx(3e-3 * 0.5)  # tiny.yaml's ttur g_lr × 0.5
    assert found[""]["lr"] == pytest.approx(3e-3)
    rest = {n for n, _ in generator.named_parameters()} - set(expected)
    assert sorted(found[""]["param_names"]) == sorted(rest)
    assert [g["lr"] for g in t.update.d_opt.param_groups] == [pytest.approx(3e-3)]

    rules = ("update_rule=[{type: ttur, g_lr: 2.0e-3, d_lr: 1.0e-3, betas: [0.0, 0.9]}, "
             "{type: lr_schedule, warmup_steps: 4}]")
    t = trainer(tmp_path / "scheduled", groups, rules, registry=custom, blueprint=STYLED)
    for step in range(2):
        steps(t, 1)
        factor = (step + 1) / 4  # schedules.lr_factor's warm-up
        found = _groups(t)
        assert found["mapping"]["lr"] == pytest.approx(2e-3 * factor * 0.5), step
        assert found[""]["lr"] == pytest.approx(2e-3 * factor), step


# Checked at assembly (a meta build of the network): `inspect` and `train` refuse it alike, naming the key.
def test_a_group_naming_a_tag_nobody_carries_is_a_clear_error(cli, tmp_path):
    result = cli("train", SMALL, "--out", tmp_path / "run", "--device", "cpu", "--steps", "1",
                 "--set", "optimizers.generator.groups={nobody: {lr_multiplier: 2.0}}")
    assert_clean_failure(result, mentions=("'nobody'", "parameter_tags"))


# ---------------------------------------------------------------------------------------------
# 7. A generator regulariser with state: path length, with style mixing
# ---------------------------------------------------------------------------------------------


def test_path_length_with_mixing_trains_lazily_and_checkpoints_its_running_mean(tmp_path, custom, monkeypatch):
    from ganforge.components.losses.path_length import PathLength

    original = PathLength.__call__
    run: dict = {}
    calls = []

    def counting(self, *, fake, generate, rng):
        calls.append(run["t"].update.step)
        return original(self, fake=fake, generate=generate, rng=rng)

    monkeypatch.setattr(PathLength, "__call__", counting)
    t = run["t"] = trainer(tmp_path, "generator.latent={type: normal, mixing: 0.9}",
                           "regularizers=[{type: path_length, every: 2}]", registry=custom, blueprint=STYLED)
    assert {"mix_z", "mix_cutoff"} <= t.update.generator.consumes
    t.open()
    means = []
    for _ in range(3):
        steps(t, 1)
        t.checkpoint()
        means.append(checkpoint(tmp_path, t.update.step)["components"][0]["regularizers[0]"]["pl_mean"])
    assert calls == [0, 2]
    assert all(math.isfinite(m) for m in means)
    assert means[0] != 0.0 and means[1] == means[0] and means[2] != means[1]


def test_path_length_with_mixing_resumes_exactly(tmp_path, custom):
    from ganforge.commands.train import train

    overrides = ["generator.latent={type: normal, mixing: 0.9}", "regularizers=[{type: path_length, every: 2}]",
                 "train.checkpoint_every=2"]
    common = {"overrides": overrides, "device": "cpu", "seed": None, "registry": custom}
    train(str(STYLED), out=str(tmp_path / "straight"), steps=4, resume=False, **common)
    train(str(STYLED), out=str(tmp_path / "split"), steps=2, resume=False, **common)
    train(str(STYLED), out=str(tmp_path / "split"), steps=4, resume=True, **common)
    a, b = checkpoint(tmp_path / "straight", 4), checkpoint(tmp_path / "split", 4)
    assert a["components"] == b["components"] and a["components"][0]["regularizers[0]"]["pl_mean"] != 0.0
    for network in ("generator", "discriminator"):
        assert all(torch.equal(a[network][k], b[network][k]) for k in a[network]), network
    assert not torch.equal(a["generator"]["producers.0.w_avg"], torch.zeros(16))


# ---------------------------------------------------------------------------------------------
# Regulariser needs: the engine passes what each declares
# ---------------------------------------------------------------------------------------------


def test_regularisers_receive_the_needs_they_declare(tmp_path, custom):
    from ganforge.records import DiscriminatorOutput, GeneratorPass, LabelPair

    t = trainer(tmp_path, "discriminator.head={type: acgan_output}", "loss={type: acgan}",
                "regularizers=[{type: test_record_d}, {type: test_record_g, every: 2}]",
                registry=custom, blueprint=STYLED)
    steps(t, 3)
    d_reg, g_reg = (r.regularizer for r in t.update.regularizers)
    assert [s["step"] for s in d_reg.seen] == [0, 1, 2] and [s["step"] for s in g_reg.seen] == [0, 2]
    d_names = [n for n, _ in t.update.discriminator.named_parameters()]
    for seen in d_reg.seen:
        assert isinstance(seen["labels"], LabelPair) and seen["labels"].real.shape == (4,)
        assert seen["labels"].fake.shape == (4,)
        assert seen["names"] == d_names
        assert isinstance(seen["rng"], torch.Generator)
        assert seen["logits"].shape == (4,)
        assert isinstance(seen["outputs"], DiscriminatorOutput) and seen["outputs"].class_logits.shape == (4, 4)
        assert not seen["real_grad"] and not seen["fake_grad"]  # detached images
    generator = t.update.generator
    for seen in g_reg.seen:
        assert set(seen["tags"]) == {n for n, _ in generator.named_parameters()}
        assert all(("mapping" in tags) == name.startswith("producers.0.") for name, tags in seen["tags"].items())
        assert seen["fake_grad"]  # G's images of this update, with their graph
        fresh = seen["fresh"]
        assert isinstance(fresh, GeneratorPass) and fresh.images.shape == (3, 3, 8, 8)
        assert fresh.labels.shape == (3,) and fresh.context["style"].shape == (3, 3, 16)
        assert fresh.images.requires_grad and fresh.context["style"].requires_grad


# ---------------------------------------------------------------------------------------------
# 8. Feedback
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("accumulation", [1, 2])
def test_feedback_receives_the_step_the_losses_and_ds_outputs_on_real_images(tmp_path, custom, accumulation):
    from ganforge.records import DiscriminatorOutput

    probe_d = ("discriminator.blocks=[{type: down_resblock, channels: 8, optimized: true}, "
               "{type: test_feedback_probe}, {type: down_resblock, channels: 8, downsample: false}]")
    t = trainer(tmp_path, probe_d, f"train.grad_accumulation={accumulation}", registry=custom)
    returned = steps(t, 3)
    (probe,) = [m for m in t.update.discriminator.modules() if isinstance(m, FeedbackProbe)]
    assert [s["step"] for s in probe.seen] == [0, 1, 2]
    for seen, (d_loss, g_loss) in zip(probe.seen, returned):
        assert set(seen["losses"]) == {"discriminator", "generator"}
        assert torch.equal(seen["losses"]["discriminator"], d_loss)
        assert torch.equal(seen["losses"]["generator"], g_loss)
        real = seen["real"]
        assert isinstance(real, DiscriminatorOutput)
        assert real.logit.shape == (4,)  # the whole batch, all micro-batches
        assert not real.logit.requires_grad


# ---------------------------------------------------------------------------------------------
# 9. Normalisations found by capability
# ---------------------------------------------------------------------------------------------


def test_a_custom_batch_statistics_norm_disables_the_joint_pass_and_gets_standing_statistics(tmp_path, custom):
    from ganforge.sampling.standing_stats import standing_statistics

    assert trainer(tmp_path / "plain").update.joint_d_pass is True
    norm_d = ("discriminator.blocks=[{type: down_resblock, channels: 8, optimized: true}, {type: test_batch_mean}, "
              "{type: down_resblock, channels: 8, downsample: false}]")
    norm_g = "generator.blocks=[{type: test_batch_mean}, {type: up_resblock, channels: 8}]"
    t = trainer(tmp_path / "norm", norm_d, norm_g, registry=custom)
    assert not issubclass(BatchMean, nn.modules.batchnorm._BatchNorm)
    assert t.update.joint_d_pass is False
    steps(t, 1)

    generator = t.update.generator
    (norm,) = [m for m in generator.modules() if isinstance(m, BatchMean)]
    inputs: list[torch.Tensor] = []
    norm.register_forward_pre_hook(lambda module, args: inputs.append(args[0].detach().clone()))
    generator_rng = torch.Generator().manual_seed(3)
    batches = [(torch.randn(4, 8, generator=generator_rng), torch.randint(0, 4, (4,), generator=generator_rng))
               for _ in range(3)]
    resets = norm.resets
    assert standing_statistics(generator, batches) == 3
    assert norm.resets == resets + 1 and norm.momentum == 0.1 and not generator.training
    expected = torch.stack([x.mean(dim=(0, 2, 3)) for x in inputs]).mean(dim=0)  # the plain average
    assert len(inputs) == 3
    torch.testing.assert_close(norm.running_mean, expected, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# BigGAN pieces: shared embedding, hierarchical z, biggan_up, orthogonal regularisation of G
# ---------------------------------------------------------------------------------------------


def _first_g_update(t) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """G's gradients of the first update and the weights they were taken at, just before its optimiser step."""
    grads: dict[str, torch.Tensor] = {}
    weights: dict[str, torch.Tensor] = {}
    optimizer = t.update.g_opt
    step = optimizer.step

    def capture(*args, **kwargs):
        if not grads:
            for name, parameter in t.update.generator.named_parameters():
                weights[name] = parameter.detach().clone()
                if parameter.grad is not None:
                    grads[name] = parameter.grad.clone()
        return step(*args, **kwargs)

    optimizer.step = capture
    steps(t, 1)
    return grads, weights


def test_biggan_context_trains_and_orthogonal_regularisation_adds_biggans_gradient(tmp_path):
    from ganforge.commands.inspection import describe
    from ganforge.engine.build import build_run

    spec = build_run(BIGGAN)
    layers = describe(spec.assembly, spec.plan)["generator"]["layers"]
    assert spec.assembly.generator.layers[0].input_shape == (4,)  # the stem reads the first of three z chunks
    assert layers[0]["output_shape"] == [16, 4, 4]
    assert [layer["context"] for layer in layers[1:3]] == [{"class_embedding": None, "z_chunk": 0},
                                                          {"class_embedding": None, "z_chunk": 1}]
    assert [layer["output_shape"] for layer in layers[1:3]] == [[8, 8, 8], [8, 16, 16]]  # no planes of z or y

    strength = 0.5
    plain = trainer(tmp_path / "plain", blueprint=BIGGAN)
    ortho = trainer(tmp_path / "ortho", f"regularizers=[{{type: orthogonal, strength: {strength}}}]",
                    blueprint=BIGGAN)
    (a, start), (b, start_b) = _first_g_update(plain), _first_g_update(ortho)
    assert a.keys() == b.keys() and all(torch.equal(start[k], start_b[k]) for k in start)
    embedding = [n for n in a if n.startswith("producers.0.")]
    assert embedding, "the shared embedding is trained"
    checked = 0
    for name, grad in a.items():
        difference = b[name] - grad
        w = start[name]
        if w.ndim < 2 or name in embedding:  # biases and gains; the no_orthogonal shared embedding
            torch.testing.assert_close(difference, torch.zeros_like(difference), rtol=0, atol=1e-6)
            continue
        # BigGAN-PyTorch utils.py:646-655 (ortho): strength · 2 · ((w wᵀ) ⊙ (1 − I)) · w,
        # w = the weight viewed as rows × rest, added to param.grad
        m = w.reshape(w.shape[0], -1)
        expected = strength * 2 * ((m @ m.t()) * (1 - torch.eye(m.shape[0]))) @ m
        torch.testing.assert_close(difference, expected.reshape(w.shape), rtol=1e-4, atol=1e-5)
        checked += 1
    assert checked >= 5
