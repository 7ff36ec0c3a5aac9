"""DiffAugment inside D: every D pass of a step augments, real and generated alike, in both updates."""

from __future__ import annotations

import torch

from support import TINY

FAST = ["train.batch_size=4", "train.num_workers=0", "train.log_every=1000", "train.sample_every=1000",
        "train.checkpoint_every=1000"]


def test_diff_augment_sees_real_and_generated_images_in_the_d_and_the_g_update(tmp_path, monkeypatch):
    from ganforge.components.layers.diffaugment import DiffAugment
    from ganforge.engine.build import build_trainer
    from ganforge.engine.distributed import Placement

    calls: list[tuple[int, bool]] = []
    original = DiffAugment.forward

    def counted(self, x):
        out = original(self, x)
        if not x.is_meta:  # assembly's shape probe runs on the meta device
            calls.append((x.shape[0], torch.is_grad_enabled()))
            assert self.training and not torch.equal(out, x)  # augmented, not passed through
        return out

    monkeypatch.setattr(DiffAugment, "forward", counted)
    trainer = build_trainer(TINY, placement=Placement(device=torch.device("cpu")), out=tmp_path / "run",
                            overrides=[*FAST, "discriminator.stem={type: diff_augment}"])
    update = trainer.update
    assert update.joint_d_pass is False  # tiny's D holds minibatch stddev: real and fake pass apart
    update.d_update()
    assert calls == [(4, True), (4, True)]  # the real batch, then the generated one
    calls.clear()
    update.g_update()
    assert calls == [(4, True)]  # the generated batch on its way to G's loss
