"""KID: unbiasedness, sign, and agreement with a plain O(n²) numpy loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ganforge.components.metrics.kid import KID, mmd2_unbiased


def numpy_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with k(a, b) = (a·b/d + 1)³, written out pair by pair."""
    m, d = x.shape
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_matches_numpy_loop_on_shifted_sets():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((25, 5))
    y = rng.standard_normal((25, 5)) + 0.7
    expected = numpy_mmd2_unbiased(x, y)
    assert mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(expected, rel=1e-10)
    # subsets as large as the sets: every subset is a permutation, and the U-statistic ignores order
    out = KID(subsets=3, subset_size=1000).compute(real=torch.from_numpy(x), fake=torch.from_numpy(y))
    assert out["kid"] == pytest.approx(expected, rel=1e-10)
    assert out["kid_std"] == pytest.approx(0.0, abs=1e-10)
    assert expected > 0


def test_unbiased_estimator_averages_to_zero_over_independent_draws_and_goes_negative():
    gen = torch.Generator().manual_seed(1)
    values = torch.tensor([
        mmd2_unbiased(torch.randn(40, 8, generator=gen, dtype=torch.float64),
                      torch.randn(40, 8, generator=gen, dtype=torch.float64))
        for _ in range(400)
    ])
    stderr = values.std() / math.sqrt(len(values))
    assert abs(values.mean()) < 4 * stderr
    assert (values < 0).any()


def test_kid_same_distribution_is_near_zero_and_shifted_is_clearly_positive():
    gen = torch.Generator().manual_seed(2)
    real = torch.randn(4000, 16, generator=gen, dtype=torch.float64)
    same = torch.randn(4000, 16, generator=gen, dtype=torch.float64)
    metric = KID(subsets=100, subset_size=200, seed=0)
    out = metric.compute(real=real, fake=same)
    # subsets share the pools, so allow the pool's own sampling error too (pools are 20× the subset size)
    assert abs(out["kid"]) < 3 * out["kid_std"] / math.sqrt(100) + out["kid_std"] * 200 / 4000 * 3
    shifted = metric.compute(real=real, fake=same + 0.3)
    assert shifted["kid"] > 10 * abs(out["kid"])
    assert shifted["kid"] > 3 * shifted["kid_std"] / math.sqrt(100)


def test_kid_same_distribution_can_be_negative():
    gen = torch.Generator().manual_seed(3)
    values = [KID(subsets=5, subset_size=30, seed=s).compute(
        real=torch.randn(30, 4, generator=gen), fake=torch.randn(30, 4, generator=gen))["kid"] for s in range(20)]
    assert min(values) < 0 < max(values)


def test_kid_is_seeded_and_clips_subset_size():
    gen = torch.Generator().manual_seed(4)
    real, fake = torch.randn(60, 4, generator=gen), torch.randn(50, 4, generator=gen) + 0.2
    a = KID(subsets=10, subset_size=1000, seed=7).compute(real=real, fake=fake)
    b = KID(subsets=10, subset_size=1000, seed=7).compute(real=real, fake=fake)
    c = KID(subsets=10, subset_size=1000, seed=8).compute(real=real, fake=fake)
    assert a == b and a != c and math.isfinite(a["kid"])
