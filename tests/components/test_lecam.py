"""LeCam regularisation against google/lecam-gan's formula and its moving averages, written out by hand."""

from __future__ import annotations

import pytest
import torch

from ganforge.components.losses.lecam import LeCam
from ganforge.records import DiscriminatorOutput


def out(values) -> DiscriminatorOutput:
    """A record over a leaf tensor of logits (its gradient is readable)."""
    return DiscriminatorOutput(logit=torch.tensor(values, requires_grad=True))


def test_before_start_the_averages_copy_the_batch_and_the_penalty_is_zero():
    reg = LeCam(weight=0.3, decay=0.9, start=2)
    for step in range(3):  # steps 0..2: decay 0 below start; penalty only once step > start
        value = reg(step=step, real_outputs=out([1.0, 3.0]), fake_outputs=out([-2.0, 0.0]))
        assert value.item() == 0.0
    # step 0, 1: copies (2.0, -1.0); step 2 (= start): decay 0.9 over the same values, still (2.0, -1.0)
    assert (reg.real_mean, reg.fake_mean) == pytest.approx((2.0, -1.0))


def test_the_penalty_is_the_reference_formula_with_the_updated_averages():
    reg = LeCam(weight=0.3, decay=0.9, start=0)
    reg.load_state_dict({"real_mean": 1.0, "fake_mean": -1.0})
    real, fake = out([0.5, -2.0, 1.5]), out([0.0, -3.0, 2.0])
    value = reg(step=1, real_outputs=real, fake_outputs=fake)
    real_mean = 0.9 * 1.0 + 0.1 * (0.5 - 2.0 + 1.5) / 3      # updated first (train_fns.py:55-61)
    fake_mean = 0.9 * -1.0 + 0.1 * (0.0 - 3.0 + 2.0) / 3
    expected = 0.3 * (sum(max(r - fake_mean, 0) ** 2 for r in (0.5, -2.0, 1.5)) / 3
                      + sum(max(real_mean - f, 0) ** 2 for f in (0.0, -3.0, 2.0)) / 3)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    value.backward()
    assert real.logit.grad is not None and fake.logit.grad is not None


def test_state_round_trips_exactly():
    a, b = LeCam(start=0), LeCam(start=0)
    a(step=1, real_outputs=out([0.3]), fake_outputs=out([-0.7]))
    b.load_state_dict(a.state_dict())
    assert b(step=2, real_outputs=out([0.1]), fake_outputs=out([0.2])).item() == \
        a(step=2, real_outputs=out([0.1]), fake_outputs=out([0.2])).item()
    assert a.state_dict() == b.state_dict()
