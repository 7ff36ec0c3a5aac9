"""The engine's speed settings change how a step runs, never what it computes (CPU checks).

The GPU side of the same promises is in test_gpu.py.
"""

from __future__ import annotations

import torch

from support import TINY


# tiny.yaml's D without its minibatch_stddev layers, which depend on the whole batch
PLAIN_D = ("discriminator.blocks=[{type: down_resblock, channels: 32, optimized: true}, "
           "{type: down_resblock, channels: 64}, {type: down_resblock, channels: 64, downsample: false}]")


# Set here, not taken from tiny.yaml: Adam turns the rounding of near-zero gradients into steps of
# about the learning rate, so the joint-vs-split weight gap grows with it (3 D steps: 2.9e-7 at 2e-4,
# 1.5e-6 at 1e-3, 4.4e-6 at tiny's 3e-3, measured).
SAGAN_LR = ("update_rule.0.g_lr=2e-4", "update_rule.0.d_lr=2e-4")


def _trainer(tmp_path, *overrides: str):
    from ganforge.engine.distributed import place_process
    from ganforge.engine.build import build_trainer

    return build_trainer(str(TINY), overrides=["train.batch_size=8", "data.size=64", PLAIN_D, *SAGAN_LR, *overrides],
                         placement=place_process("cpu"), out=tmp_path, data="real")


def test_joint_discriminator_pass_equals_two_passes(tmp_path):
    """One D pass over [real; fake] gives the same update, σ and u/v as the official two passes."""
    states = []
    for joint in ("true", "false"):
        trainer = _trainer(tmp_path / joint, f"train.joint_d_pass={joint}")
        assert trainer.update.joint_d_pass is (joint == "true")
        losses = [trainer.update.d_update() for _ in range(3)]
        states.append((losses, trainer.update.discriminator.state_dict()))
    (joint_losses, joint_state), (split_losses, split_state) = states
    torch.testing.assert_close(torch.stack(joint_losses), torch.stack(split_losses), rtol=1e-5, atol=1e-6)
    assert joint_state.keys() == split_state.keys()
    for key in joint_state:  # weights, and the power-iteration vectors _u/_v
        torch.testing.assert_close(joint_state[key], split_state[key], rtol=1e-4, atol=1e-6, msg=key)


def test_a_batch_dependent_discriminator_keeps_two_passes(tmp_path):
    from ganforge.engine.step import batch_dependent as _batch_dependent

    assert not _batch_dependent(_trainer(tmp_path / "a").update.discriminator)
    assert _batch_dependent(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)))

    class MinibatchStd(torch.nn.Module):
        batch_dependent = True

    assert _batch_dependent(torch.nn.Sequential(MinibatchStd()))


def test_fp32_means_fp32_and_tf32_is_its_own_setting(tmp_path):
    for tf32 in (False, True):
        trainer = _trainer(tmp_path / str(tf32), "train.precision=fp32", f"train.tf32={str(tf32).lower()}")
        trainer.runtime.cuda = True  # the flags are only touched on CUDA; check what they would be set to
        torch.backends.cuda.matmul.allow_tf32 = not tf32
        with trainer.runtime.backend_flags():
            assert torch.backends.cuda.matmul.allow_tf32 is tf32
            assert torch.backends.cudnn.allow_tf32 is tf32
            assert torch.backends.cudnn.benchmark is True
    torch.backends.cuda.matmul.allow_tf32 = False


def test_deterministic_turns_off_cudnn_autotuning(tmp_path):
    trainer = _trainer(tmp_path, "train.deterministic=true")
    trainer.runtime.cuda = True
    with trainer.runtime.backend_flags():
        assert torch.backends.cudnn.deterministic is True and torch.backends.cudnn.benchmark is False


def test_plain_optimizer_is_the_per_parameter_loop(tmp_path):
    plain = _trainer(tmp_path / "plain", "train.fused_optimizer=false")
    assert plain.update.g_opt.defaults["foreach"] is False and not plain.update.g_opt.defaults["fused"]
    default = _trainer(tmp_path / "default")
    assert default.update.g_opt.defaults["foreach"] is None  # torch picks (fused on CUDA is set explicitly)


def test_evaluation_and_sampling_run_under_the_blueprints_tf32_setting(tmp_path):
    """Between steps too: the process-wide TF32 default does not leak into evaluation or sample grids."""
    from types import SimpleNamespace

    seen: dict[str, tuple[bool, bool]] = {}

    def flags() -> tuple[bool, bool]:
        return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32

    def evaluate(network, **kwargs):  # type: ignore[no-untyped-def]
        seen["evaluation"] = flags()
        return SimpleNamespace(values={}, protocol={})

    class Recording(torch.nn.Module):
        def forward(self, z, labels):  # type: ignore[no-untyped-def]
            seen["sampling"] = flags()
            return torch.zeros(z.shape[0], 3, 4, 4)

    trainer = _trainer(tmp_path, "train.tf32=false")
    trainer.runtime.cuda = True  # the flags are only touched on CUDA; check what they would be set to
    trainer.evaluator = evaluate
    trainer.update.sampling_generator = Recording  # type: ignore[method-assign]
    before = flags()
    torch.backends.cuda.matmul.allow_tf32 = True  # what a process default (or an earlier step) may leave
    try:
        trainer.evaluate(None)
        trainer.save_samples(trainer.fixed_sample_inputs())
        assert seen == {"evaluation": (False, False), "sampling": (False, False)}
        assert torch.backends.cuda.matmul.allow_tf32 is True  # put back after use
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before[0]
