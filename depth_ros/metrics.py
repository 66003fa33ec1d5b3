"""Standard monocular depth metrics (Eigen et al. 2014; the KITTI depth benchmark's SILog).

ROS-free and torch-free: used by the trainer's validation, the evaluation script and the demo.
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "a1", "a2", "a3")


def depth_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
                  min_depth: float = 1e-3, max_depth: float = 80.0) -> dict[str, float]:
    """Eigen's depth metrics of one prediction against ground truth (both metres, same shape).

    Pixels count where ``mask`` (if given) is true, the ground truth lies in
    (``min_depth``, ``max_depth``) and the prediction is finite. As in the KITTI evaluation
    code, predictions are clipped to [``min_depth``, ``max_depth``] first.

    Returns ``abs_rel`` mean |p − g|/g, ``sq_rel`` mean (p − g)²/g, ``rmse`` √mean (p − g)²
    (metres), ``rmse_log`` √mean (ln p − ln g)², ``silog`` 100·√(mean e² − (mean e)²) with
    e = ln p − ln g, and ``a1``/``a2``/``a3`` the fraction with max(p/g, g/p) < 1.25, 1.25²,
    1.25³. All are NaN when no pixel is valid.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {pred.shape} vs {gt.shape}")
    if not 0 <= min_depth < max_depth:
        raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
    valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth) & np.isfinite(pred)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != gt.shape:
            raise ValueError(f"mask shape {mask.shape} differs from gt shape {gt.shape}")
        valid &= mask
    if not valid.any():
        return dict.fromkeys(METRIC_NAMES, float("nan"))
    # A zero minimum would send log(0) to -inf: clip to a tiny positive depth instead.
    p = np.clip(pred[valid], max(min_depth, 1e-9), max_depth)
    g = gt[valid]
    ratio = np.maximum(p / g, g / p)
    err = p - g
    log_err = np.log(p) - np.log(g)
    return {
        "abs_rel": float(np.mean(np.abs(err) / g)),
        "sq_rel": float(np.mean(err**2 / g)),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "rmse_log": float(np.sqrt(np.mean(log_err**2))),
        # max(…, 0): rounding can push the variance a hair below zero for a perfect match.
        "silog": float(100.0 * np.sqrt(max(np.mean(log_err**2) - np.mean(log_err) ** 2, 0.0))),
        "a1": float(np.mean(ratio < 1.25)),
        "a2": float(np.mean(ratio < 1.25**2)),
        "a3": float(np.mean(ratio < 1.25**3)),
    }


def mean_metrics(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Average per-image metrics (the KITTI convention), ignoring images without valid pixels."""
    if not per_image:
        return dict.fromkeys(METRIC_NAMES, float("nan"))
    out = {}
    for key in per_image[0]:
        values = np.array([m[key] for m in per_image], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[key] = float(values.mean()) if values.size else float("nan")
    return out
