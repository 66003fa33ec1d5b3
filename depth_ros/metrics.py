"""Standard monocular depth metrics (Eigen et al. 2014; the KITTI depth benchmark's SILog).

ROS-free and torch-free: used by the trainer's validation, the evaluation script and the demo.
"""

from __future__ import annotations

import cv2
import numpy as np

from depth_ros.geometry import backproject_depth

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


# --- the KITTI depth benchmark's devkit ------------------------------------------------------

DEVKIT_METRIC_NAMES = ("silog", "sq_error_rel", "abs_error_rel", "irmse", "imae", "mae", "rmse",
                       "log_mae", "log_rmse")


def interpolate_background(pred: np.ndarray) -> np.ndarray:
    """Fill missing predictions (≤ 0 or not finite) as the KITTI devkit does before scoring:
    along each row, a gap between two estimates takes the smaller of them (the background),
    and a gap at either end the nearest estimate. A row without any estimate stays 0."""
    out = np.array(pred, dtype=np.float64)
    valid = np.isfinite(out) & (out > 0)
    out[~valid] = 0.0
    for row, ok in zip(out, valid, strict=True):
        cols = np.flatnonzero(ok)
        if not len(cols) or len(cols) == len(row):
            continue
        idx = np.arange(len(row))
        # Index of the last estimate at or left of each pixel, and the first at or right.
        left = np.maximum.accumulate(np.where(ok, idx, -1))
        right = np.minimum.accumulate(np.where(ok, idx, len(row))[::-1])[::-1]
        left_value = np.where(left >= 0, row[np.maximum(left, 0)], np.inf)
        right_value = np.where(right < len(row), row[np.minimum(right, len(row) - 1)], np.inf)
        row[~ok] = np.minimum(left_value, right_value)[~ok]
    return out


def kitti_devkit_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
                         interpolate: bool = True) -> dict[str, float]:
    """The KITTI depth prediction / completion devkit's per-image errors, in its units.

    Over the pixels with ground truth (> 0, and ``mask`` where given), with the prediction
    filled by ``interpolate_background`` first (as the devkit does; ``interpolate=False``
    scores only pixels with an estimate): ``silog`` 100·√(mean e² − (mean e)²) with
    e = ln g − ln p; ``sq_error_rel`` 100·mean ((p − g)/g)² and ``abs_error_rel``
    100·mean |p − g|/g (percent); ``irmse`` and ``imae`` of 1/p − 1/g in 1/km; ``mae`` and
    ``rmse`` in millimetres; ``log_mae``, ``log_rmse`` of e. Note ``sq_error_rel`` divides by
    g², not by g as Eigen's ``sq_rel`` does. NaN everywhere when no pixel counts.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {pred.shape} vs {gt.shape}")
    valid = np.isfinite(gt) & (gt > 0)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != gt.shape:
            raise ValueError(f"mask shape {mask.shape} differs from gt shape {gt.shape}")
        valid &= mask
    p_full = interpolate_background(pred) if interpolate else pred
    valid &= np.isfinite(p_full) & (p_full > 0)
    if not valid.any():
        return dict.fromkeys(DEVKIT_METRIC_NAMES, float("nan"))
    p, g = p_full[valid], gt[valid]
    err = np.abs(g - p)
    inv = np.abs(1.0 / g - 1.0 / p)
    log_diff = np.log(g) - np.log(p)
    return {
        "silog": float(100.0 * np.sqrt(max(np.mean(log_diff**2) - np.mean(log_diff) ** 2,
                                           0.0))),
        "sq_error_rel": float(100.0 * np.mean((err / g) ** 2)),
        "abs_error_rel": float(100.0 * np.mean(err / g)),
        "irmse": float(1000.0 * np.sqrt(np.mean(inv**2))),
        "imae": float(1000.0 * np.mean(inv)),
        "mae": float(1000.0 * np.mean(err)),
        "rmse": float(1000.0 * np.sqrt(np.mean(err**2))),
        "log_mae": float(np.mean(np.abs(log_diff))),
        "log_rmse": float(np.sqrt(np.mean(log_diff**2))),
    }


# --- evaluation crops (Garg et al. 2016, Eigen et al. 2014) -----------------------------------

# Fractions of the image (top, bottom, left, right) of the standard KITTI crops.
KITTI_CROPS = {"garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
               "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229)}
# NYU Depth v2's Eigen crop, in pixels of the 480×640 image (rows 45:471, columns 41:601).
NYU_EIGEN_CROP_PX = (45, 471, 41, 601)


def eval_crop_mask(height: int, width: int, crop: str | None) -> np.ndarray:
    """Boolean H×W mask of a named evaluation crop: ``garg``/``eigen`` (KITTI, fractions of
    the image as in the BTS / Monodepth2 evaluation code), ``nyu`` (the Eigen crop of
    NYU's 480×640 images, scaled to other sizes), or None (everything)."""
    mask = np.zeros((height, width), dtype=bool)
    if crop is None:
        mask[:] = True
    elif crop in KITTI_CROPS:
        top, bottom, left, right = KITTI_CROPS[crop]
        mask[int(top * height):int(bottom * height), int(left * width):int(right * width)] = True
    elif crop == "nyu":
        top, bottom, left, right = NYU_EIGEN_CROP_PX
        mask[round(top * height / 480):round(bottom * height / 480),
             round(left * width / 640):round(right * width / 640)] = True
    else:
        raise ValueError(f"unknown crop {crop!r}; known: garg, eigen, nyu, or None")
    return mask


def median_scale(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``pred`` times median(gt)/median(pred) over ``mask`` (Monodepth2's protocol for models
    without metric scale); returned unchanged where the mask selects nothing."""
    pred = np.asarray(pred, dtype=np.float64)
    valid = np.asarray(mask, dtype=bool) & np.isfinite(pred) & (pred > 0)
    if not valid.any():
        return pred
    return pred * (np.median(np.asarray(gt)[valid]) / np.median(pred[valid]))


def evaluation_metrics(pred: np.ndarray, gt: np.ndarray, crop: str | None = None,
                       min_depth: float = 1e-3, max_depth: float = 80.0) -> dict[str, float]:
    """One image's metrics as ``training/evaluate.py`` reports them: Eigen's (``depth_metrics``)
    and the devkit's (``kitti_devkit_metrics``, keys prefixed ``devkit_``, the prediction
    clipped to the range first), over the pixels with ground truth (> 0, not NaN) inside the
    named ``crop`` (see ``eval_crop_mask``) and within (``min_depth``, ``max_depth``)."""
    gt = np.asarray(gt)
    height, width = gt.shape
    in_range = (gt > min_depth) & (gt < max_depth) & eval_crop_mask(height, width, crop)
    metrics = depth_metrics(pred, gt, mask=in_range, min_depth=min_depth, max_depth=max_depth)
    devkit = kitti_devkit_metrics(np.clip(pred, min_depth, max_depth), gt, mask=in_range)
    metrics.update({f"devkit_{k}": v for k, v in devkit.items()})
    return metrics


# --- where the LiDAR reaches -------------------------------------------------------------------

# The two bands a completion model is scored in apart: above the LiDAR's field of view (the
# model is on its own there) and inside it.
SCAN_BANDS = ("above_scan", "in_scan")
# A band with fewer scorable pixels than this in an image is not scored for that image.
MIN_BAND_PIXELS = 100
# Columns on each side whose top-most return also counts for a column (the beams' azimuth
# step leaves single columns without a return).
SCAN_TOP_HALF_WIDTH = 4


def above_scan_mask(sparse_depth: np.ndarray, half_width: int = SCAN_TOP_HALF_WIDTH
                    ) -> np.ndarray:
    """Pixels above the LiDAR's top-most return of their column (the highest within
    ``half_width`` columns either side); a column with no return nearby is all "above"."""
    has = np.isfinite(sparse_depth) & (sparse_depth > 0)
    height = has.shape[0]
    top = np.where(has.any(axis=0), has.argmax(axis=0), height)
    padded = np.pad(top, half_width, mode="edge")
    window = np.lib.stride_tricks.sliding_window_view(padded, 2 * half_width + 1)
    top = window.min(axis=1)
    return np.arange(height)[:, None] < top[None, :]


def band_metrics(pred: np.ndarray, gt: np.ndarray, above: np.ndarray, crop: str | None = None,
                 min_depth: float = 1e-3, max_depth: float = 80.0,
                 bands: tuple[str, str] = SCAN_BANDS) -> dict[str, dict[str, float]]:
    """``evaluation_metrics`` of one image in each of two ``bands``: the first where
    ``above`` is true (by default the ``above_scan_mask`` of its LiDAR input, ``SCAN_BANDS``),
    the second elsewhere; a band with fewer than ``MIN_BAND_PIXELS`` pixels of ground truth
    in range is left out."""
    gt = np.asarray(gt)
    scorable = (gt > min_depth) & (gt < max_depth)
    out = {}
    for band, inside in zip(bands, (above, ~above), strict=True):
        if (scorable & inside).sum() >= MIN_BAND_PIXELS:
            out[band] = evaluation_metrics(pred, np.where(inside, gt, 0.0), crop, min_depth,
                                           max_depth)
    return out


# --- returns the camera cannot see ----------------------------------------------------------

# Held-out LiDAR returns are scored apart where the scan saw past a nearer object's edge (the
# camera sees the object there, the LiDAR the background behind it) and everywhere else.
SEE_THROUGH_BANDS = ("see_through", "visible")
SEE_THROUGH_WINDOW_PX = 7
SEE_THROUGH_FARTHER = 1.10


def see_through_mask(scan: np.ndarray, window_px: int = SEE_THROUGH_WINDOW_PX,
                     farther: float = SEE_THROUGH_FARTHER) -> np.ndarray:
    """The returns of a projected scan (metres, 0 = none) more than ``farther`` times the
    nearest return in the ``window_px`` × ``window_px`` window around them: the background
    seen past a near object's edge (or a return beside a nearer one at a depth edge)."""
    scan = np.asarray(scan, np.float32)
    has = scan > 0
    # Nearest return in the window: a grey-scale erosion (minimum), empty pixels at +inf.
    nearest = cv2.erode(np.where(has, scan, np.float32(np.inf)),
                        np.ones((window_px, window_px), np.uint8))
    return has & (scan / farther > nearest)


# --- the ground and what stands on it -----------------------------------------------------------

# Monocular models are also scored apart on the ground plane and off it (things standing on
# it, walls, vegetation): a model that has learnt depth from the image row alone is right on
# the road and wrong on every object.
GROUND_BANDS = ("ground", "off_ground")


def ground_mask(depth: np.ndarray, K: np.ndarray,  # noqa: N803 - the usual name
                tolerance_m: float = 0.25, iterations: int = 200, max_points: int = 20000,
                max_tilt_deg: float = 25.0, seed: int = 0) -> np.ndarray | None:
    """The pixels of ``depth`` (metres, 0 = none; e.g. a projected LiDAR scan or dense
    ground truth) within ``tolerance_m`` of the dominant ground plane below the camera
    (camera optical frame: y down): RANSAC over 3-point planes whose normal is within
    ``max_tilt_deg`` of vertical, on up to ``max_points`` points. None when no such plane
    holds a tenth of the points (e.g. a frame with no floor or road in view)."""
    depth = np.asarray(depth, np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    if valid.sum() < 3:
        return None
    points = backproject_depth(depth, K)[valid].astype(np.float64)
    rng = np.random.default_rng(seed)
    sample = points[rng.choice(len(points), min(max_points, len(points)), replace=False)]
    triples = sample[rng.integers(0, len(sample), (iterations, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-9
    normals[ok] /= norms[ok, None]
    normals *= np.where(normals[:, 1] < 0, -1.0, 1.0)[:, None]  # pointing down (+y)
    offsets = -(normals * triples[:, 0]).sum(axis=1)
    # Level enough, and under the camera: the plane's height below the camera, -d / n_y, > 0.
    ok &= (normals[:, 1] > np.cos(np.radians(max_tilt_deg))) & (offsets < 0)
    if not ok.any():
        return None
    distances = np.abs(sample @ normals[ok].T + offsets[ok])
    inliers = (distances < tolerance_m).sum(axis=0)
    best = int(np.argmax(inliers))
    if inliers[best] < 0.1 * len(sample):
        return None
    normal, offset = normals[ok][best], offsets[ok][best]
    mask = np.zeros(depth.shape, bool)
    mask[valid] = np.abs(points @ normal + offset) < tolerance_m
    return mask
