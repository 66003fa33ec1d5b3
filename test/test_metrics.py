"""depth_metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from depth_ros.metrics import (
    DEVKIT_METRIC_NAMES,
    METRIC_NAMES,
    depth_metrics,
    eval_crop_mask,
    ground_mask,
    interpolate_background,
    kitti_devkit_metrics,
    mean_metrics,
    median_scale,
)

LN15 = math.log(1.5)


def test_two_pixels_by_hand() -> None:
    # Pixel 1: pred 1.5 m for 1 m (ratio 1.5); pixel 2 exact.
    m = depth_metrics(np.array([1.5, 4.0]), np.array([1.0, 4.0]))
    expected = {
        "abs_rel": (0.5 / 1.0 + 0.0) / 2,  # 0.25
        "sq_rel": (0.25 / 1.0 + 0.0) / 2,  # 0.125
        "rmse": math.sqrt(0.25 / 2),  # 0.35355
        "rmse_log": math.sqrt(LN15**2 / 2),  # 0.28671
        "silog": 100 * math.sqrt(LN15**2 / 2 - (LN15 / 2) ** 2),  # 20.2733
        "a1": 0.5,  # 1.5 ≥ 1.25
        "a2": 1.0,  # 1.5 < 1.5625
        "a3": 1.0,
    }
    assert set(m) == set(METRIC_NAMES)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, rel=1e-9), key
    assert m["silog"] == pytest.approx(20.2733, abs=1e-4)


def test_perfect_prediction() -> None:
    gt = np.array([[2.0, 10.0], [30.0, 79.0]])
    m = depth_metrics(gt.copy(), gt)
    assert m["abs_rel"] == m["rmse"] == m["silog"] == 0.0
    assert m["a1"] == m["a2"] == m["a3"] == 1.0


def test_silog_ignores_a_global_scale() -> None:
    gt = np.array([2.0, 5.0, 20.0])
    pred = np.array([2.2, 4.5, 21.0])
    assert depth_metrics(3.0 * pred, gt, max_depth=1000)["silog"] == pytest.approx(
        depth_metrics(pred, gt, max_depth=1000)["silog"], rel=1e-9)


@pytest.mark.parametrize(("pred", "gt", "mask", "min_depth", "abs_rel"), [
    # The mask drops the second pixel (abs_rel 1 there).
    ([2.0, 8.0], [2.0, 4.0], [True, False], 1e-3, 0.0),
    # gt 0 (no data) and gt ≥ max_depth do not count.
    ([3.0, 5.0, 90.0], [2.0, 0.0, 85.0], None, 1e-3, 0.5),
    # A NaN prediction does not count.
    ([np.nan, 6.0], [4.0, 4.0], None, 1e-3, 0.5),
    # Predictions are clipped to max_depth first: 100 → 80 against 50.
    ([100.0], [50.0], None, 1e-3, 0.6),
    # ... and to min_depth: 0 → 1 against 2.
    ([0.0], [2.0], None, 1.0, 0.5),
])
def test_valid_pixels_and_clipping(pred, gt, mask, min_depth, abs_rel) -> None:
    m = depth_metrics(np.array(pred), np.array(gt), None if mask is None else np.array(mask),
                      min_depth=min_depth)
    assert m["abs_rel"] == pytest.approx(abs_rel)


def test_no_valid_pixel_gives_nan() -> None:
    m = depth_metrics(np.ones((2, 2)), np.zeros((2, 2)))
    assert all(math.isnan(v) for v in m.values())


@pytest.mark.parametrize(("pred", "gt", "mask"), [
    (np.ones(3), np.ones(4), None),
    (np.ones(3), np.ones(3), np.ones(2, dtype=bool)),
])
def test_shape_mismatch_is_an_error(pred, gt, mask) -> None:
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(pred, gt, mask)


def test_mean_metrics_averages_per_image_and_skips_empty_images() -> None:
    a = depth_metrics(np.array([1.5, 4.0]), np.array([1.0, 4.0]))  # abs_rel 0.25
    b = depth_metrics(np.array([4.0]), np.array([4.0]))  # abs_rel 0
    empty = depth_metrics(np.array([1.0]), np.array([0.0]))
    assert mean_metrics([a, b, empty])["abs_rel"] == pytest.approx(0.125)
    assert math.isnan(mean_metrics([])["rmse"])


# KITTI devkit ---------------------------------------------------------------------------------

def test_devkit_metrics_by_hand() -> None:
    # Pixel 1: 1.5 m predicted for 1 m; pixel 2 exact.
    m = kitti_devkit_metrics(np.array([[1.5, 4.0]]), np.array([[1.0, 4.0]]))
    inv = 1.0 - 1.0 / 1.5
    expected = {
        "silog": 100 * math.sqrt(LN15**2 / 2 - (LN15 / 2) ** 2),
        "sq_error_rel": 100 * (0.5**2 / 1.0**2) / 2,  # divided by g², unlike Eigen's sq_rel
        "abs_error_rel": 100 * 0.5 / 2,
        "irmse": 1000 * math.sqrt(inv**2 / 2),  # 1/km
        "imae": 1000 * inv / 2,
        "mae": 1000 * 0.5 / 2,  # mm
        "rmse": 1000 * math.sqrt(0.25 / 2),
        "log_mae": LN15 / 2,
        "log_rmse": math.sqrt(LN15**2 / 2),
    }
    assert set(m) == set(DEVKIT_METRIC_NAMES)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, rel=1e-9), key


def test_devkit_fills_missing_predictions_with_the_background() -> None:
    row = np.array([[0.0, 5.0, np.nan, -1.0, 3.0, 0.0]])
    np.testing.assert_array_equal(interpolate_background(row), [[5, 5, 3, 3, 3, 3]])
    np.testing.assert_array_equal(interpolate_background(np.zeros((2, 3))), np.zeros((2, 3)))
    gt = np.full((1, 6), 3.0)
    # Filled, every pixel scores; without the fill only the two estimates do.
    assert kitti_devkit_metrics(row, gt)["mae"] == pytest.approx(1000 * 2 * 2 / 6)
    assert kitti_devkit_metrics(row, gt, interpolate=False)["mae"] == pytest.approx(1000)


def test_devkit_ignores_pixels_without_ground_truth() -> None:
    m = kitti_devkit_metrics(np.array([[2.0, 9.0]]), np.array([[2.0, 0.0]]))
    assert m["mae"] == 0.0 and m["silog"] == 0.0
    assert math.isnan(kitti_devkit_metrics(np.ones((2, 2)), np.zeros((2, 2)))["rmse"])


@pytest.mark.parametrize("crop, rows, cols", [
    ("garg", (153, 371), (44, 1197)),
    ("eigen", (124, 342), (44, 1197)),
    (None, (0, 375), (0, 1242)),
])
def test_kitti_crops(crop, rows, cols) -> None:
    mask = eval_crop_mask(375, 1242, crop)
    r, c = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    assert (r[0], r[-1] + 1) == rows and (c[0], c[-1] + 1) == cols
    assert mask.sum() == (rows[1] - rows[0]) * (cols[1] - cols[0])


def test_nyu_eigen_crop_and_unknown_crop() -> None:
    mask = eval_crop_mask(480, 640, "nyu")
    assert mask.sum() == (471 - 45) * (601 - 41) and mask[45, 41] and not mask[44, 41]
    with pytest.raises(ValueError, match="unknown crop 'kb'"):
        eval_crop_mask(10, 10, "kb")


def test_median_scaling_recovers_the_scale() -> None:
    gt = np.array([[2.0, 4.0, 8.0], [16.0, 0.0, 3.0]])
    mask = gt > 0
    np.testing.assert_allclose(median_scale(0.25 * gt + (~mask) * 7, gt, mask)[mask], gt[mask])


def _road_scene(height_m: float = 1.65, pitch_deg: float = 0.0):
    """Depth of a flat road 1.65 m under a camera (pitched down by ``pitch_deg``) and a box
    standing on it: the box's pixels and the intrinsics."""
    K = np.array([[200.0, 0, 80], [0, 200.0, 60], [0, 0, 1]])  # noqa: N806
    rows, cols = np.mgrid[0:120, 0:160].astype(np.float64)
    rays = np.stack([(cols - 80) / 200, (rows - 60) / 200, np.ones_like(rows)], -1)
    pitch = np.radians(pitch_deg)
    down = np.array([0.0, np.cos(pitch), -np.sin(pitch)])  # world "down" in the camera frame
    along = rays @ down
    depth = np.where(along > 1e-3, height_m / np.maximum(along, 1e-3), 0.0)
    depth[depth > 60] = 0.0
    box = (rows >= 40) & (rows < 80) & (cols >= 100) & (cols < 130)
    depth[box] = 8.0  # a wall 8 m ahead, standing on the road
    return depth.astype(np.float32), K, box


@pytest.mark.parametrize("pitch_deg", [0.0, 5.0])
def test_ground_mask_finds_the_road_and_not_what_stands_on_it(pitch_deg) -> None:
    depth, K, box = _road_scene(pitch_deg=pitch_deg)  # noqa: N806
    mask = ground_mask(depth, K)
    assert mask is not None and mask.shape == depth.shape
    road = (depth > 0) & ~box
    assert mask[road].mean() > 0.99
    # the wall is off the ground except where it meets it (its bottom rows, within 0.25 m)
    assert mask[box].mean() < 0.1
    assert not mask[depth == 0].any()


def test_ground_mask_without_a_ground_plane_is_none() -> None:
    K = np.array([[200.0, 0, 80], [0, 200.0, 60], [0, 0, 1]])  # noqa: N806
    wall = np.full((120, 160), 5.0, np.float32)  # a camera facing a wall
    assert ground_mask(wall, K) is None
    assert ground_mask(np.zeros((120, 160), np.float32), K) is None
