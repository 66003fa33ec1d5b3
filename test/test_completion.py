"""depth_ros.completion: IP-Basic on hand-made scans with known answers, its interface as a
predictor, and its figures on the real kitti_dev scans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from depth_ros.completion import ClassicalCompletion, ip_basic
from depth_ros.kitti.formats import read_depth_png

KITTI_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_dev"
DRIVE = KITTI_DEV / "2011_09_26" / "2011_09_26_drive_0023_sync"
VARIANTS = [{"variant": "fast"}, {"variant": "multiscale"},
            {"variant": "fast", "extrapolate": False, "blur": "bilateral"},
            {"variant": "multiscale", "extrapolate": False}]


def _single(depth_m: float = 10.0, size: int = 61) -> np.ndarray:
    sparse = np.zeros((size, size), np.float32)
    sparse[size // 2, size // 2] = depth_m
    return sparse


def _rows(depth_m: float, height: int = 80, width: int = 90, first: int = 30,
          step: int = 3, col_step: int = 2) -> np.ndarray:
    """A flat surface at one depth seen as a scan: every ``step``-th row from ``first`` on,
    every ``col_step``-th column (a 64-beam LiDAR's pattern, denser)."""
    sparse = np.zeros((height, width), np.float32)
    sparse[first::step, ::col_step] = depth_m
    return sparse


@pytest.mark.parametrize("options", VARIANTS)
def test_shape_dtype_and_empty_input(options):
    out = ip_basic(np.zeros((37, 53), np.float64), **options)
    assert out.dtype == np.float32 and out.shape == (37, 53)
    assert not out.any()  # nothing in, nothing out: no depth is invented from an empty scan
    nan_scan = np.full((37, 53), np.nan)
    assert not ip_basic(nan_scan, **options).any()


def test_a_single_return_fills_its_neighbourhood_and_no_more():
    out = ip_basic(_single(10.0), extrapolate=False, blur="none")
    filled = out > 0
    np.testing.assert_allclose(out[filled], 10.0, rtol=1e-6)
    ys, xs = np.nonzero(filled)
    # Diamond 5×5 dilation (radius 2), then the 7×7 fill (3 more); the 5×5 median trims the
    # corners back. The neighbourhood is filled, the rest of the image is not.
    assert filled[30, 30] and filled[28:33, 28:33].all()
    assert max(abs(ys - 30).max(), abs(xs - 30).max()) <= 5
    assert 20 <= filled.sum() <= 121


@pytest.mark.parametrize("options", VARIANTS)
def test_returns_of_a_flat_surface_are_kept_exactly(options):
    sparse = _rows(12.5)
    out = ip_basic(sparse, **options)
    has = sparse > 0
    np.testing.assert_allclose(out[has], 12.5, atol=1e-4)
    # Between the rows and columns of the scan, the same depth fills in.
    inside = out[31:78, 2:88]
    assert (inside > 0).all()
    np.testing.assert_allclose(inside, 12.5, atol=1e-4)


@pytest.mark.parametrize("variant", ["fast", "multiscale"])
def test_nothing_above_the_top_return_without_extrapolation(variant):
    sparse = _rows(20.0, first=30)
    out = ip_basic(sparse, variant=variant, extrapolate=False)
    # Only the dilations reach above the top-most row (30): at most a few pixels.
    assert not out[:24].any()
    assert (out[30] > 0).all()


@pytest.mark.parametrize("variant", ["fast", "multiscale"])
def test_extrapolation_extends_each_columns_top_value_upwards(variant):
    sparse = _rows(20.0, first=30)
    sparse[30:, 60:] = np.where(sparse[30:, 60:] > 0, 8.0, 0.0)  # a nearer object on the right
    out = ip_basic(sparse, variant=variant, extrapolate=True)
    assert (out[:30] > 0).all()
    # Each column above its top return carries the value found at the top of that column.
    np.testing.assert_allclose(out[:20, :50], 20.0, atol=1e-3)
    np.testing.assert_allclose(out[:20, 66:], 8.0, atol=1e-3)


def test_nearer_returns_win_at_an_occlusion_edge():
    sparse = _rows(40.0)
    sparse[40:60, 40:50] = np.where(sparse[40:60, 40:50] > 0, 5.0, 0.0)
    out = ip_basic(sparse, blur="none")
    # A background return two pixels from the near object's edge (column 48) is overwritten
    # by it (the inversion makes dilation keep the nearest); farther away the background stays.
    assert sparse[45, 50] == 40.0 and out[45, 50] == pytest.approx(5.0)
    assert out[45, 54] == pytest.approx(40.0) and out[45, 60] == pytest.approx(40.0)


def test_returns_beyond_the_inversion_range_are_dropped():
    sparse = _single(150.0)
    assert not ip_basic(sparse).any()
    assert ip_basic(sparse, max_depth_m=200.0)[30, 30] == pytest.approx(150.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"variant": "slow"}, "variant must be one of"),
    ({"blur": "box"}, "blur must be one of"),
    ({"max_depth_m": float("nan")}, "max_depth_m must be"),
])
def test_bad_options_are_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ip_basic(_single(), **kwargs)
    with pytest.raises(ValueError, match=message):
        ClassicalCompletion(**kwargs)


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((0, 4)), np.zeros((3, 4, 2))])
def test_bad_scans_are_one_clear_error(bad):
    with pytest.raises(ValueError, match="non-empty H×W"):
        ip_basic(bad)


def test_classical_completion_has_the_estimator_contract():
    model = ClassicalCompletion()
    meta = model.metadata
    assert (meta.kind, meta.output, meta.stride, meta.architecture) == (
        "fusion", "metric", 1, "ip_basic")
    assert model.resize_policy == "native" and model.backend_name == "ip_basic[fast,cpu]"
    rgb = np.zeros((80, 90, 3), np.uint8)
    sparse = _rows(12.5)
    depth = model.predict(rgb, sparse, fx=721.5)
    assert depth.dtype == np.float32 and depth.shape == (80, 90)
    np.testing.assert_allclose(depth[sparse > 0], 12.5, atol=1e-4)
    assert np.isfinite(depth[:30]).all()  # extrapolated above the top row, as published
    detailed = model.predict_detailed(rgb, sparse)
    assert detailed.kind == "metric" and detailed.fit is None
    np.testing.assert_array_equal(detailed.depth, depth)
    # Without LiDAR there is nothing to complete: NaN (no estimate) everywhere.
    assert np.isnan(model.predict(rgb, None)).all()
    assert np.isnan(model.predict(rgb, np.zeros((80, 90), np.float32))).all()


@pytest.mark.parametrize("rgb, sparse, fx, message", [
    (np.zeros((80, 90), np.uint8), None, None, "rgb must be"),
    (np.zeros((80, 90, 3), np.float32), None, None, "rgb must be"),
    (np.zeros((80, 90, 3), np.uint8), np.zeros((40, 90)), None, "sparse_depth must be"),
    (np.zeros((80, 90, 3), np.uint8), None, -1.0, "fx must be"),
])
def test_classical_completion_rejects_bad_input(rgb, sparse, fx, message):
    with pytest.raises(ValueError, match=message):
        ClassicalCompletion().predict(rgb, sparse, fx)


@pytest.mark.skipif(not DRIVE.is_dir(), reason=f"kitti_dev not found at {KITTI_DEV} "
                    "(../shared/data/kitti_dev beside the repository)")
def test_held_out_figures_match_kitti_devs_reference():
    """kitti_dev's README: IP-Basic (default settings) scores RMSE 3887 mm, MAE 1042 mm at
    the held-out 20 % of each scan, averaged over the 14 images."""
    rmse, mae, dev = [], [], []
    for camera in (2, 3):
        for index in range(7):
            scan = read_depth_png(DRIVE / "proj_depth" / "velodyne_raw" / f"image_0{camera}"
                                  / f"{index:010d}.png")
            rng = np.random.default_rng(index * 10 + camera)
            held = (rng.random(scan.shape) < 0.2) & (scan > 0)
            given = np.where(held, 0.0, scan)
            out = ip_basic(given)
            assert (out[held] > 0).all()  # every held-out pixel gets an estimate
            err = out[held] - scan[held]
            rmse.append(1000 * np.sqrt(np.mean(err**2)))
            mae.append(1000 * np.mean(np.abs(err)))
            dev.append(np.median(np.abs(out[given > 0] - given[given > 0])))
    assert np.mean(rmse) == pytest.approx(3887, rel=0.01)
    assert np.mean(mae) == pytest.approx(1042, rel=0.01)
    # IP-Basic keeps its input within a centimetre or so (the blurs move it a little).
    assert np.mean(dev) < 0.03
