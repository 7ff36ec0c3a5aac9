"""Seed derivations keep their values; random streams come back exactly; logged losses are micro-batch means."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from ganforge.engine import seeding
from support import TINY

CASES = [(0, 0, 0, 0), (1, 3, 17, 1), (42, 7, 4096, 3), (2**31 - 1, 11, 123_456, 7)]


@pytest.mark.parametrize("seed, a, b, c", CASES)
def test_derived_seeds_equal_the_formulas_runs_were_made_with(seed, a, b, c):
    # The formulas as they were written at each call site before they moved into one module:
    # changing any of them changes data, shuffle order and noise, and breaks resumed runs.
    assert seeding.derive_seed(seed, a) == seed * 1_000_003 + a  # data items, the noise stream
    assert seeding.derive_seed(seed) == seed
    assert seeding.derive_seed(seed, a, b) == (seed * 1_000_003 + a) * 1_000_003 + b
    assert seeding.process_seed(seed, a) == seed + a
    assert seeding.epoch_seed(seed, a) == seed * 7919 + a
    assert seeding.loader_seed(seed, a, b, c) == ((seed * 7919 + a) * 1_000_003 + b) * 131 + c
    assert seeding.reseed_for_rank(seed, a, b) == seed * 1_000_003 + a * 7919 + b
    assert seeding.fixed_samples_seed(seed) == seed + 12345


def _draw(noise: torch.Generator) -> tuple:
    return (random.random(), float(np.random.rand()), float(torch.rand(())), float(torch.rand((), generator=noise)))


def test_captured_streams_come_back_exactly():
    noise = torch.Generator().manual_seed(5)
    seeding.seed_everything(3)
    _draw(noise)
    state = seeding.capture_rng(noise)
    json.dumps(state)  # plain lists: gatherable across ranks, safe to unpickle
    expected = [_draw(noise) for _ in range(3)]
    seeding.seed_everything(99)
    noise.manual_seed(99)
    seeding.restore_rng(state, noise)
    assert [_draw(noise) for _ in range(3)] == expected


def test_a_checkpoint_from_another_world_size_reseeds_each_rank():
    noise = torch.Generator()
    state = seeding.capture_rng(noise)
    messages: list[str] = []
    seeding.restore_rank_rng([state, state], rank=0, world_size=1, seed=4, step=10, noise=noise,
                             cuda_device=None, source="ckpt", report=messages.append)
    assert len(messages) == 1 and "written by 2 process(es)" in messages[0]
    after = _draw(noise)
    fresh = seeding.reseed_for_rank(4, 0, 10)
    seeding.seed_everything(fresh)
    assert after == _draw(torch.Generator().manual_seed(fresh))


def test_logged_losses_are_the_mean_over_micro_batches(tmp_path):
    from ganforge.engine.distributed import place_process
    from ganforge.engine.build import build_trainer

    trainer = build_trainer(str(TINY), overrides=["train.batch_size=8", "data.size=64", "train.grad_accumulation=2",
                                                  "train.log_every=1"], placement=place_process("cpu"), out=tmp_path,
                            data="real")
    assert not trainer.update.regularizers and trainer.update.plan.d_steps == 1  # so D's loss is the loss's own value
    seen: dict[str, list[float]] = {"d": [], "g": []}
    loss = trainer.update.loss
    d_loss, g_loss = loss.discriminator_loss, loss.generator_loss

    def spy_d(**kwargs):  # type: ignore[no-untyped-def]
        value = d_loss(**kwargs)
        seen["d"].append(float(value.detach()))
        return value

    def spy_g(**kwargs):  # type: ignore[no-untyped-def]
        value = g_loss(**kwargs)
        seen["g"].append(float(value.detach()))
        return value

    loss.discriminator_loss, loss.generator_loss = spy_d, spy_g
    trainer.options.steps = 1
    trainer.run()
    assert len(seen["d"]) == len(seen["g"]) == 2 and seen["d"][0] != seen["d"][1]
    record = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
              if '"d_loss"' in line][-1]
    assert record["d_loss"] == pytest.approx(sum(seen["d"]) / 2, rel=1e-6, abs=1e-7)
    assert record["g_loss"] == pytest.approx(sum(seen["g"]) / 2, rel=1e-6, abs=1e-7)
