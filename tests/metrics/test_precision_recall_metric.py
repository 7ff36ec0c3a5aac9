"""Improved precision and recall: identical (==) to a float64 computation written here with scipy's cdist.

The metric takes distances from a float32 matrix product with an error bound and recomputes only
the pairs the bound cannot settle; these tests hold it to the plain float64 answer on sets built to
break that: duplicates, ties exactly at a radius, lattices, Inception-sized magnitudes, distances
whose square roots round together, and a large common offset (cancellation).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import cdist

from ganforge.components.metrics import precision_recall as pr_module
from ganforge.components.metrics.precision_recall import (PrecisionRecall, inside_manifold, knn_radii,
                                                          precision_recall, within_radii)
from ganforge.errors import GanforgeError


def reference(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Radii (k-th nearest other point: index k of the sorted row, the point itself at index 0) and
    precision/recall, all from scipy's float64 cdist."""
    real_radii = np.partition(cdist(real, real), k, axis=1)[:, k]
    fake_radii = np.sort(cdist(fake, fake), axis=1)[:, k]
    d = cdist(fake, real)  # (fake, real)
    precision = float(np.mean((d <= real_radii[None, :]).any(axis=1)))
    recall = float(np.mean((d <= fake_radii[:, None]).any(axis=0)))
    return real_radii, fake_radii, precision, recall


def assert_identical(real: np.ndarray, fake: np.ndarray, k: int, chunk_size: int) -> tuple[float, float]:
    real_radii, fake_radii, precision, recall = reference(real, fake, k)
    t_real, t_fake = torch.from_numpy(real), torch.from_numpy(fake)
    assert np.array_equal(knn_radii(t_real, k, chunk_size=chunk_size).numpy(), real_radii)
    assert np.array_equal(knn_radii(t_fake, k, chunk_size=chunk_size).numpy(), fake_radii)
    out = PrecisionRecall(k=k, chunk_size=chunk_size).compute(real=t_real, fake=t_fake)
    assert out == {"precision": precision, "recall": recall}
    return precision, recall


def _gaussian(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((300, 64)), rng.standard_normal((260, 64)) * 1.2 + 0.1


def _inception_like(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Like pool3 features: 2048-D, non-negative, mostly small, up to about 10."""
    rng = np.random.default_rng(seed)
    real = np.clip(rng.gamma(0.6, 0.7, (200, 2048)), 0, 10)
    fake = np.clip(rng.gamma(0.6, 0.75, (200, 2048)), 0, 10)
    fake[:20] = real[:20]  # some generated images equal to real ones
    return real, fake


def _lattice(seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Points of {0, 1, 2}⁴: every distance is sqrt of a small integer, so distances tie everywhere."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 3, (300, 4)).astype(np.float64), rng.integers(0, 3, (280, 4)).astype(np.float64)


def _duplicates(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Each real point 4 times, each generated point 3 times, some generated equal to real ones."""
    rng = np.random.default_rng(seed)
    real = np.repeat(rng.standard_normal((75, 8)), 4, axis=0)
    fake = np.repeat(np.concatenate([real[::12], rng.standard_normal((60, 8))]), 3, axis=0)
    return real, fake


def _ties_at_the_radius(seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Generated points exactly at a real point's radius: each reflects a real point's nearest
    neighbour through it (dyadic coordinates, so s − (2s − n) = n − s exactly)."""
    rng = np.random.default_rng(seed)
    real = rng.integers(-64, 64, (120, 6)).astype(np.float64) / 8
    nearest = np.argsort(cdist(real, real), axis=1)[:, 1]
    fake = 2 * real - real[nearest]
    return real, fake


def _common_offset(seed: int = 5, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Small differences on a large common offset: ‖a‖² + ‖b‖² − 2a·b cancels almost completely."""
    rng = np.random.default_rng(seed)
    return 1000.0 + 1e-3 * rng.standard_normal((60, dim)), 1000.0 + 1e-3 * rng.standard_normal((50, dim))


SETS = {"gaussian 300x64": _gaussian, "inception-like 200x2048": _inception_like, "lattice": _lattice,
        "duplicates": _duplicates, "ties at the radius": _ties_at_the_radius, "common offset": _common_offset,
        "common offset 2048-D": lambda: _common_offset(dim=2048)}


@pytest.mark.parametrize("name", list(SETS))
@pytest.mark.parametrize("k", [1, 3, 5])
def test_identical_to_scipy_float64(name: str, k: int):
    real, fake = SETS[name]()
    assert_identical(real, fake, k, chunk_size=64)


def test_the_adversarial_sets_are_what_they_claim():
    real, fake = _ties_at_the_radius()
    radii = np.sort(cdist(real, real), axis=1)[:, 1]
    assert (np.diag(cdist(fake, real)) == radii).all()  # every generated point exactly on a sphere
    real, fake = _lattice()
    assert len(np.unique(cdist(fake, real))) <= 17  # squared distances 0, 1, ..., 16
    _, _, precision, recall = reference(*_inception_like(), 3)
    assert 0 < precision < 1 and 0 < recall < 1


def _squares_to(target: float, y: float) -> tuple[float, float]:
    """(x, y) with fl(x·x + y·y) == target exactly (stepping x one float at a time)."""
    x = math.sqrt(target - y * y)
    for step in range(-200, 201):
        candidate = x
        for _ in range(abs(step)):
            candidate = math.nextafter(candidate, math.inf if step > 0 else -math.inf)
        if candidate * candidate + y * y == target:
            return candidate, y
    raise AssertionError("no such x")


def test_square_roots_that_round_together_count_as_inside():
    # Real 0 and n = (0.6, 0.8) are each other's nearest neighbour (k = 1): radius r = sqrt(R) at 0.
    # Generated g has squared distance D to 0 one float above R; sqrt(D) may still round to r. The
    # reference (sqrt(D) ≤ r) then counts it inside, a squared comparison (D ≤ R) would not.
    n = (0.6, 0.8)
    squared = n[0] * n[0] + n[1] * n[1]
    above = [math.nextafter(squared, math.inf)]
    while len(above) < 6:
        above.append(math.nextafter(above[-1], math.inf))
    same_root = next(d for d in above if math.sqrt(d) == math.sqrt(squared))
    bigger_root = next(d for d in above if math.sqrt(d) > math.sqrt(squared))
    far = [(100.0, 100.0), (100.0, 101.0), (101.0, 100.0)]
    real = np.array([(0.0, 0.0), n, *far])
    for target, inside in ((same_root, True), (bigger_root, False), (squared, True)):
        x, y = _squares_to(target, -0.7)  # on the other side of 0 from n, so only 0's ball can hold it
        fake = np.array([(x, y), (-x, -y), (200.0, 0.0), (200.0, 1.0)])
        _, _, precision, _ = reference(real, fake, 1)
        assert precision == (0.5 if inside else 0.0)
        assert_identical(real, fake, 1, chunk_size=2)


@given(data=st.data(), k=st.integers(1, 4), dim=st.integers(1, 5), chunk=st.integers(1, 7),
       scale=st.sampled_from([1.0, 0.125, 3.0, 1e6]))
@settings(max_examples=60, deadline=None)
def test_identical_on_tie_heavy_random_sets(data, k, dim, chunk, scale):
    coords = st.integers(-3, 3)
    real = data.draw(hnp.arrays(np.float64, st.tuples(st.integers(k + 1, 14), st.just(dim)), elements=coords))
    fake = data.draw(hnp.arrays(np.float64, st.tuples(st.integers(k + 1, 14), st.just(dim)), elements=coords))
    assert_identical(real * scale, fake * scale, k, chunk_size=chunk)


@given(data=st.data(), strict=st.booleans())
@settings(max_examples=40, deadline=None)
def test_within_radii_is_the_reference_comparison(data, strict):
    dim = data.draw(st.integers(1, 4))
    elements = st.integers(-2, 2).map(float) | st.floats(-2, 2, width=16)
    queries = data.draw(hnp.arrays(np.float64, (data.draw(st.integers(1, 12)), dim), elements=elements))
    support = data.draw(hnp.arrays(np.float64, (data.draw(st.integers(1, 12)), dim), elements=elements))
    radii = np.sort(cdist(support, queries), axis=1)[:, 0]  # each radius exactly some query's distance
    d = cdist(queries, support)
    expected = d < radii[None, :] if strict else d <= radii[None, :]
    blocks = list(within_radii(torch.from_numpy(queries), torch.from_numpy(support), torch.from_numpy(radii),
                               strict=strict, chunk_size=5))
    got = torch.cat([block for _, block in blocks]).numpy()
    assert np.array_equal(got, expected)
    assert np.array_equal(inside_manifold(torch.from_numpy(queries), torch.from_numpy(support),
                                          torch.from_numpy(radii), chunk_size=3).numpy(),
                          (d <= radii[None, :]).any(axis=1))


def test_float32_bounds_hold_the_float64_squared_distances():
    for make in SETS.values():
        real, fake = make()
        bounds = pr_module._Float32Bounds(torch.from_numpy(fake), torch.from_numpy(real))
        exact = cdist(fake, real, "sqeuclidean") * bounds.scale2
        for start, lower, upper in bounds.blocks(50):
            block = exact[start:start + lower.shape[0]]
            assert (lower.double().numpy() <= block).all() and (block <= upper.double().numpy()).all()


def test_float32_settles_almost_every_pair_on_inception_like_features(monkeypatch):
    # The speed comes from deciding in float32: on realistic features only a sliver is recomputed.
    counted = []
    original = pr_module._ExactSquared.__call__
    monkeypatch.setattr(pr_module._ExactSquared, "__call__",
                        lambda self, ia, ib: counted.append(ia.shape[0]) or original(self, ia, ib))
    real, fake = _inception_like()
    precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=3, chunk_size=64)
    pairs = 2 * 200 * 199 + 200 * 200 * 2  # two radii passes, both membership directions
    assert sum(counted) < 0.03 * pairs


def test_products_are_ieee_float32_whatever_the_process_allows():
    # torch.set_float32_matmul_precision("medium") lets matmuls use bf16 (TF32 on a GPU): outside the
    # error bound. Inside the guard the product is the IEEE one, bit for bit; the setting is put back.
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 2048, generator=gen), torch.randn(48, 2048, generator=gen)
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        ieee = a @ b.T
        torch.set_float32_matmul_precision("medium")
        with pr_module._ieee_float32_matmul():
            guarded = a @ b.T
        assert torch.equal(guarded, ieee)
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(previous)


def test_exact_when_the_process_allows_reduced_precision_matmuls():
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # bf16 products where the CPU or GPU has them
    try:
        assert_identical(*_inception_like(), 3, chunk_size=100)
        assert torch.get_float32_matmul_precision() == "medium"  # put back after the product
    finally:
        torch.set_float32_matmul_precision(previous)


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
    assert out == {"precision": 4 / 5, "recall": 2 / 5}


def test_float32_input_is_taken_as_its_float64_values():
    real, fake = (x.astype(np.float32) for x in _gaussian())
    assert_identical(real.astype(np.float64), fake.astype(np.float64), 3, chunk_size=64)
    got = precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=3, chunk_size=64)
    assert got == reference(real.astype(np.float64), fake.astype(np.float64), 3)[2:]


def test_refusals_are_one_line_errors():
    with pytest.raises(GanforgeError, match="k=3 needs more than 3 samples per set; got 3"):
        knn_radii(torch.zeros(3, 2), 3)
    with pytest.raises(GanforgeError, match="NaN or infinite"):
        PrecisionRecall().compute(real=torch.randn(10, 2), fake=torch.full((10, 2), math.nan))
    with pytest.raises(GanforgeError, match="pr needs reference features"):
        PrecisionRecall().compute(real=None, fake=torch.zeros(5, 2))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_identical_on_the_gpu_with_tf32_allowed():
    real, fake = _inception_like()
    previous = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32"  # as train.tf32 leaves it
    try:
        t_real, t_fake = torch.from_numpy(real).cuda(), torch.from_numpy(fake).cuda()
        radii = knn_radii(t_real, 3, chunk_size=64)
        assert radii.device.type == "cuda"
        expected = reference(real, fake, 3)
        assert np.array_equal(radii.cpu().numpy(), expected[0])
        assert precision_recall(t_real, t_fake, k=3, chunk_size=64) == expected[2:]
    finally:
        torch.backends.cuda.matmul.fp32_precision = previous
