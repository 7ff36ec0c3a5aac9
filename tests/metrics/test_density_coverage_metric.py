"""Density and coverage: a case worked by hand, and the chunked code against a brute-force scipy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import cdist

from ganforge.components.metrics.density_coverage import density_and_coverage
from ganforge.errors import GanforgeError
from ganforge.registry import default_registry


def metric(**settings_):
    return default_registry().get("metric", "density_coverage").build(settings_)


def test_hand_computed_two_dimensional_case():
    real = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [4.0, 0.0]], dtype=torch.float64)  # A, B, C, D
    fake = torch.tensor([[1.2, -0.3], [6.0, 0.0], [0.0, -3.0], [0.0, -1.0]], dtype=torch.float64)  # P, Q, R, S
    # Real-real distances: AB 1, AC 1, AD 4, BC √2, BD 3, CD √17. k = 2 (second nearest other real point):
    #   r_A = 1 (1, 1, 4), r_B = √2 (1, √2, 3), r_C = √2 (1, √2, √17), r_D = 4 (3, 4, √17).
    # P (1.2, -0.3): to A √1.53 ≈ 1.24 > 1, to B √0.13 ≈ 0.36 < √2, to C √3.13 ≈ 1.77 > √2,
    #   to D √7.93 ≈ 2.82 < 4: inside the balls of B and D (2).
    # Q (6, 0): to A 6, B 5, C √37, D 2 < 4: inside D's ball only (1).
    # R (0, -3): to A 3 > 1, B √10 > √2, C 4 > √2, D 5 > 4: in no ball (0).
    # S (0, -1): to A exactly 1 = r_A and to B exactly √2 = r_B, C 2, D √17 > 4: on two boundaries,
    #   outside every ball because a ball is open (prdc compares with `<`) (0).
    # density = (2 + 1 + 0 + 0) / (k·M) = 3 / (2·4) = 3/8; coverage: B and D hold a fake sample, 2/4.
    # (With closed balls S would count in A and B: density 5/8, coverage 3/4.)
    out = metric(k=2, chunk_size=3).compute(real=real, fake=fake)
    assert out == {"density": pytest.approx(3 / 8), "coverage": pytest.approx(1 / 2)}


def brute_force(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """The definitions written out with scipy: balls of the k-th nearest other real sample, open."""
    real_real = cdist(real, real)
    radii = np.sort(real_real, axis=1)[:, k]  # column 0 is the sample itself
    inside = cdist(fake, real) < radii[None, :]  # (M, N)
    return float(inside.sum() / (k * fake.shape[0])), float(inside.any(axis=0).mean())


@pytest.mark.parametrize("k", [1, 5])
def test_chunked_matches_brute_force_on_random_features(k: int):
    rng = np.random.default_rng(k)
    real = rng.standard_normal((130, 8))
    fake = rng.standard_normal((97, 8)) * 1.2 + 0.3
    density, coverage = brute_force(real, fake, k)
    out = metric(k=k, chunk_size=16).compute(real=torch.from_numpy(real), fake=torch.from_numpy(fake))
    assert out == {"density": pytest.approx(density, abs=1e-12), "coverage": pytest.approx(coverage, abs=1e-12)}
    assert 0 < out["coverage"] < 1 and 0 < out["density"]  # neither limiting case


def test_matches_brute_force_at_inception_like_width():
    # float32 products on 512-d features with a common offset: the exact float64 fallback must settle the boundaries
    rng = np.random.default_rng(7)
    real = rng.standard_normal((240, 512)) + 20.0
    fake = rng.standard_normal((160, 512)) * 1.05 + 20.0
    density, coverage = brute_force(real, fake, 5)
    assert density_and_coverage(torch.from_numpy(real), torch.from_numpy(fake), chunk_size=64) == (density, coverage)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), k=st.integers(1, 4), dim=st.integers(1, 3), chunk=st.integers(1, 5))
def test_matches_brute_force_on_integer_grids_with_ties(data, k, dim, chunk):
    # Small integer coordinates: many exact ties between distances and radii, all exact in float64.
    coords = st.integers(-4, 4)
    real = data.draw(hnp.arrays(np.float64, st.tuples(st.integers(k + 1, 12), st.just(dim)), elements=coords))
    fake = data.draw(hnp.arrays(np.float64, st.tuples(st.integers(1, 12), st.just(dim)), elements=coords))
    density, coverage = brute_force(real, fake, k)
    got = density_and_coverage(torch.from_numpy(real), torch.from_numpy(fake), k=k, chunk_size=chunk)
    assert got == (pytest.approx(density, abs=1e-12), pytest.approx(coverage, abs=1e-12))


def test_limiting_cases():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(200, 6, generator=gen, dtype=torch.float64)
    # Every real sample is inside its own ball (distance 0 < its radius): coverage 1.
    assert metric().compute(real=real, fake=real.clone())["coverage"] == 1.0
    assert metric().compute(real=real, fake=real + 100.0) == {"density": 0.0, "coverage": 0.0}


def test_refusals_name_the_metric_and_the_counts():
    with pytest.raises(GanforgeError, match="density_coverage with k=5 needs more than 5 reference images; got 5"):
        metric().compute(real=torch.zeros(5, 2), fake=torch.zeros(3, 2))
    with pytest.raises(GanforgeError, match="density_coverage needs reference features"):
        metric().compute(real=None, fake=torch.zeros(3, 2), real_stats=(torch.zeros(2), torch.eye(2)))


def test_default_k_is_five_and_it_needs_per_image_reference_features():
    built = metric()
    assert built.k == 5 and built.name == "density_coverage"
    assert built.needs_real is True and getattr(built, "needs_full_features", True) is True
