"""Relative depth made metric: a robust per-frame fit of ``scale · inverse_depth + shift`` to
the inverse of LiDAR depth, with figures that say how far to trust it.

A relative model (Depth Anything V2 relative, say) predicts affine-invariant inverse depth:
right up to an unknown scale and shift per image. Projected LiDAR returns pin both down, but
some returns are wrong for the image (through glass, on object edges where camera and LiDAR
see different surfaces, from the ego vehicle), so the fit must ignore a good share of gross
outliers: least median of squares over random point pairs (breakdown point 50 %), then least
squares on the points within 2.5 robust standard deviations, repeated until that set settles.
Residuals are relative (see ``robust_scale_shift``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_MIN_POINTS = 20
DEFAULT_MIN_INLIER_FRACTION = 0.5
# Largest accepted standard error of the scale relative to the scale: beyond it the points do
# not span enough depth (all on one wall, say) to tell scale from shift.
DEFAULT_MAX_SCALE_ERROR = 0.05
# Largest accepted rms relative residual of the inliers: beyond it the points and the
# prediction do not describe the same scene (a relative model is typically 5-15 % off).
DEFAULT_MAX_RELATIVE_RESIDUAL = 0.3
INLIER_SIGMAS = 2.5
# Least-median-of-squares search: this many random pairs, scored on at most this many points.
HYPOTHESES = 64
SCORING_POINTS = 500
# 1 / Φ⁻¹(0.75): the median absolute residual of Gaussian noise is 0.6745 σ.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class ScaleShiftFit:
    """``scale · inverse_depth + shift ≈ 1 / depth_m`` fitted to LiDAR points, and its quality.

    Attributes:
        scale: the fitted scale (NaN when no fit could be computed).
        shift: the fitted shift, 1/m (NaN when no fit could be computed).
        points: usable LiDAR points (finite, depth > 0, finite prediction).
        inliers: points within 2.5 robust standard deviations of the fit.
        inlier_fraction: ``inliers / points`` (0 without points).
        rms_residual: root-mean-square residual of the inliers, in inverse depth (1/m).
        rms_relative_residual: that relative to the LiDAR inverse depth (about the relative
            depth error: 0.01 is 1 %).
        scale_error: standard error of the scale over the scale (how well the points pin it).
        ok: whether the fit may make metric depth: enough points and inliers, a small
            scatter, a positive and well-determined scale.
        reason: why not, when ``ok`` is False (empty otherwise).
    """

    scale: float
    shift: float
    points: int
    inliers: int
    inlier_fraction: float
    rms_residual: float
    rms_relative_residual: float
    scale_error: float
    ok: bool
    reason: str = ""

    def apply(self, inverse_depth: np.ndarray) -> np.ndarray:
        """Metric depth ``1 / (scale · inverse_depth + shift)`` (float32, NaN where that is not
        positive or not finite)."""
        fitted = self.scale * np.asarray(inverse_depth, dtype=np.float64) + self.shift
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.where(fitted > 0, 1.0 / fitted, np.nan)
        return depth.astype(np.float32)


def _failed(points: int, reason: str, scale: float = math.nan, shift: float = math.nan
            ) -> ScaleShiftFit:
    return ScaleShiftFit(float(scale), float(shift), points, 0, 0.0, math.nan, math.nan,
                         math.nan, False, reason)


def _weighted_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(s, t) minimising Σ ((s·x + t − y) / y)²: least squares in relative depth error."""
    w = 1.0 / (y * y)
    sw, sx, sy = w.sum(), (w * x).sum(), (w * y).sum()
    sxx, sxy = (w * x * x).sum(), (w * x * y).sum()
    det = sw * sxx - sx * sx
    if not det > 1e-12 * sw * sxx:  # one x value: no line (the mean level, scale 0)
        return 0.0, float(sy / sw)
    return float((sw * sxy - sx * sy) / det), float((sxx * sy - sx * sxy) / det)


def _least_median_of_squares(x: np.ndarray, y: np.ndarray, rng: np.random.Generator
                             ) -> tuple[float, float] | None:
    """The positive-scale line through two of the points with the smallest median relative
    residual (scored on a random subset when there are many points); None if no pair gives a
    positive scale."""
    n = len(x)
    pick = rng.choice(n, SCORING_POINTS, replace=False) if n > SCORING_POINTS else slice(None)
    xs, ys = x[pick], y[pick]
    i, j = rng.integers(0, n, HYPOTHESES), rng.integers(0, n, HYPOTHESES)
    dx = x[j] - x[i]
    usable = np.abs(dx) > 1e-12 * float(np.abs(x).max())
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(usable, (y[j] - y[i]) / dx, np.nan)
    t = y[i] - s * x[i]
    # The plain least-squares line competes too: the best answer when there are no outliers.
    s_all, t_all = _weighted_line(x, y)
    s, t = np.append(s, s_all), np.append(t, t_all)
    keep = np.isfinite(s) & (s > 0)
    if not keep.any():
        return None
    s, t = s[keep], t[keep]
    scores = np.median(np.abs((s[:, None] * xs[None] + t[:, None]) / ys[None] - 1.0), axis=1)
    best = int(np.argmin(scores))
    return float(s[best]), float(t[best])


def robust_scale_shift(inverse_depth: np.ndarray, depth_m: np.ndarray,
                       min_points: int = DEFAULT_MIN_POINTS,
                       min_inlier_fraction: float = DEFAULT_MIN_INLIER_FRACTION,
                       max_scale_error: float = DEFAULT_MAX_SCALE_ERROR,
                       max_relative_residual: float = DEFAULT_MAX_RELATIVE_RESIDUAL,
                       max_iterations: int = 10, seed: int = 0) -> ScaleShiftFit:
    """Fit ``s · inverse_depth + t ≈ 1 / depth_m`` to matching samples, ignoring outliers.

    Residuals are weighed relative to the LiDAR inverse depth (``(s·x + t) / y − 1``, about
    the relative depth error), because a depth model's errors grow with depth: in plain
    inverse depth every far point would look like an inlier and every near one like an
    outlier.

    Args:
        inverse_depth: the model's relative inverse depth at the LiDAR points (any shape).
        depth_m: LiDAR depth at the same points, metres; 0, negative or NaN = no return.
        min_points: fewer usable points than this (or fewer inliers) is a failed fit.
        min_inlier_fraction: a smaller share of inliers is a failed fit.
        max_scale_error: largest accepted standard error of the scale relative to the scale.
        max_relative_residual: largest accepted rms relative residual of the inliers (the
            depth error the fit leaves at the LiDAR points; 0.3 = 30 %).
        max_iterations: refits on the inlier set until it stops changing, at most this often.
        seed: the random pair search is seeded, so a frame always gets the same fit.

    Returns:
        The fit; ``ok`` False (with ``reason``) when it must not be used. Never raises for
        degenerate data (too few points, all at one depth): that is a failed fit.
    """
    x = np.asarray(inverse_depth, dtype=np.float64).ravel()
    d = np.asarray(depth_m, dtype=np.float64).ravel()
    if x.shape != d.shape:
        raise ValueError(f"inverse_depth and depth_m must have the same number of samples, "
                         f"got {x.size} and {d.size}")
    valid = np.isfinite(x) & np.isfinite(d) & (d > 0)
    x, y = x[valid], 1.0 / d[valid]
    n = int(x.size)
    needed = max(int(min_points), 2)
    if n < needed:
        return _failed(n, f"{n} usable LiDAR points, fewer than the {needed} needed")
    if float(np.ptp(x)) <= 1e-9 * max(float(np.abs(x).max()), 1e-300):
        return _failed(n, "the predicted inverse depth is the same at every LiDAR point",
                       *_weighted_line(x, y))
    if float(np.ptp(y)) <= 1e-9 * float(y.max()):
        return _failed(n, "every LiDAR point is at the same depth: the scale is not determined",
                       *_weighted_line(x, y))
    start = _least_median_of_squares(x, y, np.random.default_rng(seed))
    if start is None:
        return _failed(n, "no positive scale fits the LiDAR points", *_weighted_line(x, y))
    s, t = start
    residual = np.abs((s * x + t) / y - 1.0)
    # Exact data would give a zero spread and an empty inlier band: floor it at rounding level.
    sigma = max(MAD_TO_SIGMA * (1 + 5 / max(n - 2, 1)) * float(np.median(residual)), 1e-9)
    inliers = residual <= INLIER_SIGMAS * sigma
    for _ in range(max_iterations):
        if inliers.sum() < 2:
            break
        s, t = _weighted_line(x[inliers], y[inliers])
        residual = np.abs((s * x + t) / y - 1.0)
        sigma = max(MAD_TO_SIGMA * float(np.median(residual[inliers])), 1e-9)
        again = residual <= INLIER_SIGMAS * sigma
        if np.array_equal(again, inliers):
            break
        inliers = again
    count = int(inliers.sum())
    xi, yi = x[inliers], y[inliers]
    rms = float(np.sqrt(np.mean((s * xi + t - yi) ** 2))) if count else math.nan
    rms_relative = float(np.sqrt(np.mean(residual[inliers] ** 2))) if count else math.nan
    # Standard error of the weighted slope: σ_rel / sqrt(Σ w (x − x̄_w)²), w = 1 / y².
    w = 1.0 / (yi * yi)
    spread = float(np.sum(w * (xi - np.sum(w * xi) / np.sum(w)) ** 2)) if count else 0.0
    scale_error = (rms_relative * math.sqrt(count / max(count - 2, 1) / spread) / abs(s)
                   if spread > 0 and s != 0 else math.inf)
    reason = ""
    if count < needed:
        reason = f"{count} inliers of {n} LiDAR points, fewer than the {needed} needed"
    elif count / n < min_inlier_fraction:
        reason = (f"only {100 * count / n:.0f} % of the LiDAR points fit (at least "
                  f"{100 * min_inlier_fraction:.0f} % needed)")
    elif not rms_relative <= max_relative_residual:
        reason = (f"the LiDAR points scatter {100 * rms_relative:.0f} % rms around the fit (at "
                  f"most {100 * max_relative_residual:.0f} % accepted)")
    elif not scale_error <= max_scale_error:  # before the sign: a scale ± 90 % has no sign
        reason = (f"the LiDAR points span too little depth to fix the scale (standard error "
                  f"{100 * scale_error:.1f} % of it, at most {100 * max_scale_error:.0f} % "
                  f"accepted)")
    elif not s > 0:
        reason = f"the fitted scale {s:.3g} is not positive"
    return ScaleShiftFit(s, t, n, count, count / n, rms, rms_relative, scale_error, not reason,
                         reason)


def fit_scale_shift(inverse_depth: np.ndarray, depth_m: np.ndarray) -> tuple[float, float]:
    """(s, t) with ``s · inverse_depth + t ≈ 1 / depth_m``, robust to outliers: the best
    estimate without a quality gate (for evaluation against dense ground truth; a node wants
    ``robust_scale_shift``, which says whether to trust it). NaN with fewer than two points."""
    fit = robust_scale_shift(inverse_depth, depth_m, min_points=2)
    return fit.scale, fit.shift
