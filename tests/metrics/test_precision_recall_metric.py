"""Improved precision and recall: limiting cases and a hand-made 1-D example."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganforge.components.metrics.precision_recall import PrecisionRecall, knn_radii


def test_identical_sets_have_precision_and_recall_one():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    assert PrecisionRecall(chunk_size=64).compute(real=x, fake=x.clone()) == {"precision": 1.0, "recall": 1.0}


def test_far_apart_clusters_have_precision_and_recall_zero():
    gen = torch.Generator().manual_seed(1)
    real = torch.randn(200, 8, generator=gen)
    fake = torch.randn(150, 8, generator=gen) + 100.0
    assert PrecisionRecall().compute(real=real, fake=fake) == {"precision": 0.0, "recall": 0.0}


def test_hand_made_one_dimensional_example():
    real = torch.tensor([[0.0], [1.0], [3.2], [7.0], [20.0]], dtype=torch.float64)
    fake = torch.tensor([[0.4], [0.6], [6.6], [7.5], [35.0]], dtype=torch.float64)
    # nearest other point (k = 1): real 0→1, 1→0, 3.2→1, 7→3.2, 20→7; fake 0.4↔0.6, 6.6↔7.5, 35→7.5
    np.testing.assert_allclose(knn_radii(real, 1, chunk_size=2).numpy(), [1.0, 1.0, 2.2, 3.8, 13.0], atol=1e-12)
    np.testing.assert_allclose(knn_radii(fake, 1, chunk_size=2).numpy(), [0.2, 0.2, 0.9, 0.9, 27.5], atol=1e-12)
    # precision: 0.4, 0.6 (near 0 and 1), 6.6, 7.5 (within 3.8 of 7) inside; 35 is 15 from 20 > 13: 4/5
    # recall: 7 (0.4 from 6.6 ≤ 0.9) and 20 (15 from 35 ≤ 27.5) inside; 0, 1, 3.2 outside: 2/5
    out = PrecisionRecall(k=1, chunk_size=2).compute(real=real, fake=fake)
    assert out["precision"] == pytest.approx(0.8)
    assert out["recall"] == pytest.approx(0.4)


def brute_force(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radii(a):
        d = np.linalg.norm(a[:, None] - a[None], axis=-1)
        return np.sort(d, axis=1)[:, k]

    def coverage(q, s, r):
        d = np.linalg.norm(q[:, None] - s[None], axis=-1)
        return float(np.mean((d <= r[None]).any(axis=1)))

    return coverage(fake, real, radii(real)), coverage(real, fake, radii(fake))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_chunked_matches_brute_force(k: int):
    rng = np.random.default_rng(k)
    real = rng.standard_normal((120, 6))
    fake = rng.standard_normal((90, 6)) * 1.3 + 0.4
    precision, recall = brute_force(real, fake, k)
    out = PrecisionRecall(k=k, chunk_size=17).compute(real=torch.from_numpy(real), fake=torch.from_numpy(fake))
    assert out == {"precision": pytest.approx(precision), "recall": pytest.approx(recall)}
    assert 0 < out["precision"] < 1 or 0 < out["recall"] < 1
