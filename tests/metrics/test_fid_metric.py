"""FID against independent references: scipy's sqrtm, pytorch-fid's formula, closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ganforge.components.metrics.fid import FID, feature_stats, frechet_distance, sqrtm_psd


def random_spd(rng: np.random.Generator, n: int, rank: int | None = None) -> np.ndarray:
    a = rng.standard_normal((n, rank or n))
    return a @ a.T + (0.0 if rank else 0.1) * np.eye(n)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 12), seed=st.integers(0, 2**32 - 1))
def test_sqrtm_psd_matches_scipy(n: int, seed: int):
    m = random_spd(np.random.default_rng(seed), n)
    ours = sqrtm_psd(torch.from_numpy(m)).numpy()
    theirs = np.real(scipy.linalg.sqrtm(m))
    np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9 * np.abs(m).max())
    np.testing.assert_allclose(ours @ ours, m, rtol=1e-8, atol=1e-9 * np.abs(m).max())


def test_sqrtm_psd_of_singular_matrix_is_real_and_squares_back():
    m = random_spd(np.random.default_rng(0), 8, rank=3)  # rank deficient: eigenvalues ~0 and slightly negative
    root = sqrtm_psd(torch.from_numpy(m))
    assert root.dtype == torch.float64 and torch.isfinite(root).all()
    np.testing.assert_allclose((root @ root).numpy(), m, atol=1e-7)


def reference_fid(mu1, s1, mu2, s2) -> float:
    """pytorch-fid's formula: scipy.linalg.sqrtm of the (non-symmetric) product Σ1Σ2."""
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("seed", range(5))
def test_frechet_distance_matches_scipy_formula(seed: int):
    rng = np.random.default_rng(seed)
    d = 10
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    ours = frechet_distance(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2)))
    assert ours == pytest.approx(reference_fid(mu1, s1, mu2, s2), rel=1e-9, abs=1e-9)


def test_fid_of_feature_set_with_itself_is_zero():
    x = torch.randn(500, 16, dtype=torch.float64) * 3 + 1
    assert abs(FID().compute(real=x, fake=x)["fid"]) < 1e-9


def test_fid_with_fewer_samples_than_dimensions_matches_scipy():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((20, 32)), rng.standard_normal((20, 32)) + 0.3
    ours = FID().compute(real=torch.from_numpy(real), fake=torch.from_numpy(fake))["fid"]
    ref = reference_fid(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    assert ours == pytest.approx(ref, rel=1e-5)


def test_fid_grows_monotonically_with_noise():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(500, 16, generator=gen, dtype=torch.float64)
    base = torch.randn(500, 16, generator=gen, dtype=torch.float64)
    noise = torch.randn(500, 16, generator=gen, dtype=torch.float64)
    values = [FID().compute(real=real, fake=base + level * noise)["fid"] for level in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_fid_of_diagonal_gaussians_equals_closed_form():
    rng = np.random.default_rng(3)
    d = 6
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    got = frechet_distance(torch.from_numpy(mu1), torch.from_numpy(np.diag(v1)),
                           torch.from_numpy(mu2), torch.from_numpy(np.diag(v2)))
    assert got == pytest.approx(expected, rel=1e-12)


def test_fid_of_large_samples_approaches_population_value():
    gen = torch.Generator().manual_seed(4)
    d, n = 4, 200_000
    real = torch.randn(n, d, generator=gen, dtype=torch.float64)
    fake = torch.randn(n, d, generator=gen, dtype=torch.float64) * 2 + 1  # N(1, 4I)
    expected = d * 1.0 + d * (1 + 4 - 2 * 2)  # ‖μ‖² + Σ(σ1 + σ2 − 2√(σ1σ2))
    assert FID().compute(real=real, fake=fake)["fid"] == pytest.approx(expected, rel=0.02)


def test_fid_uses_real_stats_when_given():
    gen = torch.Generator().manual_seed(5)
    real, fake = torch.randn(300, 8, generator=gen), torch.randn(300, 8, generator=gen) + 0.5
    from_features = FID().compute(real=real, fake=fake)["fid"]
    from_stats = FID().compute(real=None, fake=fake, real_stats=feature_stats(real))["fid"]
    assert from_stats == pytest.approx(from_features, rel=1e-12)
    np.testing.assert_allclose(feature_stats(real)[1].numpy(), np.cov(real.double().numpy(), rowvar=False),
                               rtol=1e-10, atol=1e-12)
