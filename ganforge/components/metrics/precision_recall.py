"""Improved precision and recall (Kynkäänniemi et al. 2019) from k-nearest-neighbour manifolds.

Fast and exact. Distances come from one float32 matrix product per chunk (‖a‖² + ‖b‖² − 2a·b) on
the features' device; a rigorous error bound (``_Float32Bounds``) turns each product into an
interval that holds the float64 squared distance. Every decision the interval settles is final;
the few pairs it cannot settle (a k-th-neighbour candidate, a distance within the bound of a
radius) are recomputed on the CPU in float64 with the operations ``scipy.spatial.distance.cdist``
performs: Σ_t (a_t − b_t)² added in coordinate order, then a correctly rounded square root. So
radii, precision and recall are identical (==) to what scipy's cdist plus a sort gives
(tests/metrics/test_precision_recall_metric.py), ties at the radius included.
"""

from __future__ import annotations

import contextlib
import math
from typing import Annotated, Iterator

import numpy as np
import torch
from pydantic import Field

from ganforge.errors import GanforgeError
from ganforge.registry import register

__all__ = ["PrecisionRecall", "knn_radii", "inside_manifold", "precision_recall", "within_radii"]

U32 = 2.0 ** -24
"""Unit roundoff of IEEE float32 (round to nearest)."""


def knn_radii(features: torch.Tensor, k: int, *, chunk_size: int = 1000) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row (self excluded), float64 on the features' device.

    Equal to ``np.sort(cdist(x, x), axis=1)[:, k]`` in float64. Memory: chunk_size × N float32.
    Candidates are the rows whose lower bound is at most the k-th smallest upper bound (at least k
    rows lie below that, so every row that can be among the k nearest is a candidate); only the
    candidates' distances are recomputed exactly.
    """
    x = _checked(features, "knn_radii")
    n = x.shape[0]
    if n <= k:
        raise GanforgeError(f"precision/recall with k={k} needs more than {k} samples per set; got {n}")
    bounds, exact = _Float32Bounds(x, x), _ExactSquared(x, x)
    squared = np.empty(n, dtype=np.float64)
    for start, lower, upper in bounds.blocks(chunk_size):
        rows = torch.arange(lower.shape[0], device=lower.device)
        lower[rows, rows + start] = math.inf  # self excluded
        upper[rows, rows + start] = math.inf
        cut = upper.kthvalue(k, dim=1).values
        qi, sj = _pairs(lower <= cut[:, None])
        d2 = exact(qi + start, sj)
        order = np.lexsort((d2, qi))  # by row, then by distance
        first = np.searchsorted(qi[order], np.arange(lower.shape[0]))
        squared[start:start + lower.shape[0]] = d2[order][first + k - 1]
    return torch.from_numpy(np.sqrt(squared)).to(x.device)


def within_radii(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, *, strict: bool = False,
                 chunk_size: int = 1000) -> Iterator[tuple[int, torch.Tensor]]:
    """(start, block) per chunk of queries: block[i, j] = d(queries[start + i], support[j]) ≤ radii[j].

    ``strict`` tests < instead. Exact in the sense of the module docstring; ``radii`` are float64
    values as ``knn_radii`` returns. Blocks are bool (chunk_size × M) on the queries' device.
    """
    q = _checked(queries, "queries")
    s = _checked(support, "support").to(q.device)
    r = _radii_for(radii, s.shape[0])
    bounds, exact = _Float32Bounds(q, s), _ExactSquared(q, s)
    ball = _Ball(r, scale2=bounds.scale2, strict=strict, device=q.device)
    for start, lower, upper in bounds.blocks(chunk_size):
        yield start, ball.decide(lower, upper, start=start, exact=exact, radius_axis=1)


def inside_manifold(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, *,
                    chunk_size: int = 1000) -> torch.Tensor:
    """For each query: is it within radii[j] of some support point j? (bool, chunked over queries)."""
    out = torch.empty(queries.shape[0], dtype=torch.bool, device=queries.device)
    for start, block in within_radii(queries, support, radii, chunk_size=chunk_size):
        out[start:start + block.shape[0]] = block.any(dim=1)
    return out


def precision_recall(real: torch.Tensor, fake: torch.Tensor, *, k: int = 3,
                     chunk_size: int = 1000) -> tuple[float, float]:
    """(precision, recall): fake inside the real manifold, real inside the fake one.

    Three passes over N² pairs, not four: both directions read the same fake × real products.
    """
    fake = _checked(fake, "fake")
    real = _checked(real, "real").to(fake.device)
    real_radii = knn_radii(real, k, chunk_size=chunk_size)
    fake_radii = knn_radii(fake, k, chunk_size=chunk_size)
    bounds, exact = _Float32Bounds(fake, real), _ExactSquared(fake, real)
    real_balls = _Ball(real_radii, scale2=bounds.scale2, strict=False, device=fake.device)
    fake_balls = _Ball(fake_radii, scale2=bounds.scale2, strict=False, device=fake.device)
    precise = torch.empty(fake.shape[0], dtype=torch.bool, device=fake.device)
    recalled = torch.zeros(real.shape[0], dtype=torch.bool, device=fake.device)
    for start, lower, upper in bounds.blocks(chunk_size):
        stop = start + lower.shape[0]
        precise[start:stop] = real_balls.decide(lower, upper, start=start, exact=exact, radius_axis=1).any(dim=1)
        recalled |= fake_balls.decide(lower, upper, start=start, exact=exact, radius_axis=0).any(dim=0)
    return float(precise.double().mean()), float(recalled.double().mean())


# -- the float32 bound -----------------------------------------------------------------------


class _Float32Bounds:
    """lower ≤ D ≤ upper, as float32, for the float64 squared distance D of every (a_i, b_j) pair.

    Both sets are first multiplied by one power of two s (exact in float64) so that the largest
    entry is in [1, 2): float32 cannot overflow, and s² scales D exactly. Then, with u = 2⁻²⁴:

    * the product a·b from float32 copies: rounding each entry to float32 and the product is
      three factors (1 + δ), |δ| ≤ u, and every term passes through at most D − 1 additions in
      whatever order or blocking the matmul uses (an FMA rounds once), so each term carries at most
      D + 2 factors: |fl(a·b) − a·b| ≤ γ Σ|a_t b_t| ≤ γ ‖a‖‖b‖ ≤ γ (‖a‖² + ‖b‖²) / 2, with
      γ = (D + 2)u / (1 − (D + 2)u). Only IEEE float32 products are allowed here: TF32 and bf16
      matmul modes are switched off for the call.
    * everything else (the norms in float64, their float32 copies, the two float32 additions of
      values below 3(‖a‖² + ‖b‖²), and the reference's own float64 summation error, below
      D·2⁻⁵²·2(‖a‖² + ‖b‖²)) stays under 8u(‖a‖² + ‖b‖²) for D < 2²⁴; 32u is allowed.
    * underflow (entries below 2⁻¹²⁶ after scaling, flushed or subnormal) moves a·b by at most
      about 8D·2⁻¹²⁶; D·2⁻¹¹⁸ is allowed.

    So |float32 estimate − D| ≤ (γ + 32u)(‖a_i‖² + ‖b_j‖²) + D·2⁻¹¹⁸ =: w_i + w_j, a sum of a row
    term and a column term, folded into the norms: lower = (‖a‖² − w_a) + (‖b‖² − w_b) − 2a·b.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        top = max((float(x.abs().max()) for x in (a, b) if x.numel()), default=0.0)
        if top >= 2.0 ** 480:
            raise GanforgeError(f"precision/recall: feature values up to {top:.3g} are too large for float64 "
                                "squared distances")
        exponent = min(max(math.frexp(top)[1] - 1, -60), 1023) if top > 0 else 0
        scale = math.ldexp(1.0, -exponent)  # at most 2⁶⁰ up, so float64 underflow stays far below the slack
        self.scale2 = scale * scale
        same = b is a
        a = a * scale
        b = a if same else b * scale
        d = a.shape[1]
        gamma = (d + 2) * U32 / (1 - (d + 2) * U32)
        relative, absolute = gamma + 32 * U32, d * 2.0 ** -118
        self._a = a.to(torch.float32)
        self._b = self._a if same else b.to(torch.float32)
        self._a_lo, self._a_hi = self._norm_terms(a, relative, absolute)
        self._b_lo, self._b_hi = (self._a_lo, self._a_hi) if same else self._norm_terms(b, relative, absolute)

    @staticmethod
    def _norm_terms(x: torch.Tensor, relative: float, absolute: float) -> tuple[torch.Tensor, torch.Tensor]:
        norms = (x * x).sum(dim=1)
        slack = relative * norms + absolute / 2
        return (norms - slack).to(torch.float32), (norms + slack).to(torch.float32)

    def blocks(self, chunk_size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(start, lower, upper) for rows start .. start + chunk_size of a against all of b."""
        for start in range(0, self._a.shape[0], chunk_size):
            rows = slice(start, start + chunk_size)
            with _ieee_float32_matmul():
                product = self._a[rows] @ self._b.T
            product.mul_(-2.0)
            upper = product + self._a_hi[rows, None]
            upper += self._b_hi[None, :]
            lower = product.add_(self._a_lo[rows, None]).add_(self._b_lo[None, :])
            yield start, lower, upper


@contextlib.contextmanager
def _ieee_float32_matmul() -> Iterator[None]:
    """IEEE float32 matrix products inside (no TF32, no bf16), the process's setting put back after."""
    owners = [getattr(torch.backends, name).matmul for name in ("cuda", "mkldnn")
              if hasattr(getattr(torch.backends, name, None), "matmul")]
    try:
        saved = [(owner, owner.fp32_precision) for owner in owners]
    except (AttributeError, RuntimeError):  # torch < 2.9: the process-wide setting
        previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(previous)
        return
    for owner, _ in saved:
        owner.fp32_precision = "ieee"
    try:
        yield
    finally:
        for owner, value in saved:
            owner.fp32_precision = value


# -- the exact float64 part ------------------------------------------------------------------


class _ExactSquared:
    """Squared float64 distances of chosen pairs, as scipy's cdist adds them: Σ_t (a_t − b_t)² in order t."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self._a = a.detach().cpu().numpy()
        self._b = self._a if b is a else b.detach().cpu().numpy()
        self._step = max(1, 2 ** 21 // max(1, self._a.shape[1]))  # pairs per block: 16 MB of differences

    def __call__(self, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        out = np.empty(ia.shape[0], dtype=np.float64)
        for s in range(0, ia.shape[0], self._step):
            diff = self._a[ia[s:s + self._step]] - self._b[ib[s:s + self._step]]
            np.multiply(diff, diff, out=diff)
            # accumulate adds left to right, one rounding per term: the same sum as a plain loop
            out[s:s + self._step] = np.add.accumulate(diff, axis=1)[:, -1]
        return out


class _Ball:
    """Balls of float64 radii r_j: which squared-distance intervals are surely inside, surely outside.

    The reference decides sqrt(D) ≤ r (or < r) with a correctly rounded sqrt. D ≤ r²(1 − 2⁻⁵⁰)
    makes sqrt(D) ≤ r certain, D ≥ r²(1 + 2⁻⁴⁸) makes sqrt(D) round above r (strict: the margins
    2⁻⁴⁶ below and r² itself above; no pair is surely strictly inside radius 0); both thresholds
    are rounded outwards to float32 after the bound's scale s². Pairs between the two are decided
    from their exact distance.
    """

    def __init__(self, radii: torch.Tensor, *, scale2: float, strict: bool, device: torch.device) -> None:
        self.radii = radii.detach().cpu().numpy().astype(np.float64)
        self.strict = strict
        squared = self.radii * self.radii
        inner = squared * (1 - 2.0 ** (-46 if strict else -50))
        if strict:
            inner[self.radii == 0] = -1.0  # nothing is strictly inside a ball of radius 0
        outer = squared * (1 + 2.0 ** (-50 if strict else -48))
        self._inner = _float32_rounded(torch.from_numpy(inner * scale2), down=True).to(device)
        self._outer = _float32_rounded(torch.from_numpy(outer * scale2), down=False).to(device)

    def decide(self, lower: torch.Tensor, upper: torch.Tensor, *, start: int, exact: _ExactSquared,
               radius_axis: int) -> torch.Tensor:
        """Exact membership of the block's pairs in the balls; radii index the block's columns
        (``radius_axis`` 1) or its rows, offset by ``start`` (0)."""
        if radius_axis == 1:
            inner, outer = self._inner[None, :], self._outer[None, :]
        else:
            inner = self._inner[start:start + lower.shape[0], None]
            outer = self._outer[start:start + lower.shape[0], None]
        inside = upper <= inner
        qi, sj = _pairs(~inside & (lower <= outer))
        if qi.size:
            distance = np.sqrt(exact(qi + start, sj))
            radius = self.radii[sj] if radius_axis == 1 else self.radii[qi + start]
            hit = distance < radius if self.strict else distance <= radius
            rows, cols = (torch.from_numpy(index[hit]).to(inside.device) for index in (qi, sj))
            inside[rows, cols] = True
        return inside


def _float32_rounded(x: torch.Tensor, *, down: bool) -> torch.Tensor:
    """float64 → the nearest float32 at or below x (``down``) or at or above it."""
    y = x.to(torch.float32)
    wrong = y.double() > x if down else y.double() < x
    return torch.where(wrong, torch.nextafter(y, torch.tensor(-math.inf if down else math.inf)), y)


def _pairs(mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = mask.nonzero(as_tuple=True)
    return rows.cpu().numpy(), cols.cpu().numpy()


def _checked(features: torch.Tensor, what: str) -> torch.Tensor:
    x = torch.as_tensor(features).detach().to(torch.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise GanforgeError(f"{what}: expected (N, D) features, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise GanforgeError(f"{what}: the features hold NaN or infinite values (a diverged generator?)")
    return x.contiguous()


def _radii_for(radii: torch.Tensor, n: int) -> torch.Tensor:
    r = torch.as_tensor(radii).detach().to(torch.float64).reshape(-1)
    if r.shape[0] != n:
        raise GanforgeError(f"within_radii: {r.shape[0]} radii for {n} support points")
    return r


@register("metric", "pr")
class PrecisionRecall:
    """Improved precision and recall: generated inside the real manifold, real inside the generated one.

    Each manifold is the union of balls around its samples with radius = distance to the k-th
    nearest neighbour (self excluded). Distances are computed ``chunk_size`` rows at a time on the
    features' device (memory chunk_size × N float32), exactly equal to a float64 computation: see
    the module docstring.
    """

    name = "pr"
    needs_real = True
    needs_logits = False

    def __init__(self, *, k: Annotated[int, Field(ge=1)] = 3,
                 chunk_size: Annotated[int, Field(ge=1)] = 1000) -> None:
        self.k = k
        self.chunk_size = chunk_size

    def compute(self, *, real: torch.Tensor | None, fake: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
        if real is None:
            raise GanforgeError("pr needs reference features, not only their mean and covariance")
        precision, recall = precision_recall(real, fake, k=self.k, chunk_size=self.chunk_size)
        return {"precision": precision, "recall": recall}

    def __repr__(self) -> str:
        return f"PrecisionRecall(k={self.k}, chunk_size={self.chunk_size})"
