"""Fréchet Inception Distance (Heusel et al. 2017), computed in float64 with our own matrix square root."""

from __future__ import annotations

import torch

from ganforge.errors import GanforgeError
from ganforge.registry import register

__all__ = ["FID", "feature_stats", "frechet_distance", "sqrtm_psd"]


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (unbiased, N − 1, as ``np.cov``) of (N, D) features, in float64."""
    x = torch.as_tensor(features).to(torch.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise GanforgeError(f"need at least 2 feature vectors of shape (N, D); got {tuple(x.shape)}")
    mu = x.mean(dim=0)
    centred = x - mu
    sigma = centred.T @ centred / (x.shape[0] - 1)
    return mu, sigma


def _sym_eigh(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = torch.as_tensor(matrix).to(torch.float64)
    m = (m + m.T) / 2
    values, vectors = torch.linalg.eigh(m)
    return values.clamp_min(0.0), vectors  # tiny negative eigenvalues are round-off of a PSD matrix


def sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric PSD square root of a symmetric positive semi-definite matrix (float64, via eigh)."""
    values, vectors = _sym_eigh(matrix)
    return (vectors * values.sqrt()) @ vectors.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1 Σ2)^{1/2}, all in float64.

    tr (Σ1 Σ2)^{1/2} is computed as the sum of square roots of the eigenvalues of the symmetric
    PSD matrix Σ1^{1/2} Σ2 Σ1^{1/2}, which has the same eigenvalues as Σ1 Σ2. Unlike
    ``scipy.linalg.sqrtm(Σ1 Σ2)`` (pytorch-fid), this needs no ε-regularisation for singular
    covariances (fewer samples than dimensions) and never gives complex parts.
    """
    mu1, mu2 = (torch.as_tensor(m).to(torch.float64).reshape(-1) for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(s).to(torch.float64) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.numel(), mu1.numel()):
        raise GanforgeError(f"mismatched statistics: means {tuple(mu1.shape)} / {tuple(mu2.shape)}, "
                            f"covariances {tuple(s1.shape)} / {tuple(s2.shape)}")
    root1 = sqrtm_psd(s1)
    values, _ = _sym_eigh(root1 @ s2 @ root1)
    trace_sqrt = values.sqrt().sum()
    diff = mu1 - mu2
    value = diff.dot(diff) + torch.trace(s1) + torch.trace(s2) - 2.0 * trace_sqrt
    return float(value.clamp_min(0.0))


@register("metric", "fid")
class FID:
    """Fréchet Inception Distance between real and generated features (lower is better).

    Gaussians fitted to pool3 features (mean, unbiased covariance), distance in float64 with an
    eigh-based matrix square root. Accepts precomputed reference statistics (mean, covariance).
    """

    name = "fid"
    needs_real = True
    needs_full_features = False  # mean and covariance of the reference suffice
    needs_logits = False

    def __init__(self) -> None:
        pass

    def compute(self, *, real: torch.Tensor | None, fake: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
        if real_stats is not None:
            mu_r, sigma_r = real_stats
        elif real is not None:
            mu_r, sigma_r = feature_stats(real)
        else:
            raise GanforgeError("fid needs reference features or reference statistics (mean, covariance)")
        mu_f, sigma_f = feature_stats(fake)
        return {"fid": frechet_distance(mu_r, sigma_r, mu_f, sigma_f)}

    def __repr__(self) -> str:
        return "FID()"
