"""Pinhole camera model and back-projection."""

from __future__ import annotations

import numpy as np
import pytest

from depth_ros.geometry import PinholeCamera, backproject_depth

CAM = PinholeCamera(fx=721.5377, fy=721.5377, cx=609.5593, cy=172.854, width=1242, height=375)


def test_backprojection_inverts_projection():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 80, size=(CAM.height, CAM.width)).astype(np.float32)
    depth[5, 7] = np.nan
    points = backproject_depth(depth, CAM.K)
    assert points.shape == (CAM.height, CAM.width, 3) and points.dtype == np.float32
    v, u = np.mgrid[0:CAM.height, 0:CAM.width]
    uvw = points.reshape(-1, 3) @ CAM.K.T
    ok = np.isfinite(uvw).all(axis=1)
    np.testing.assert_allclose(uvw[ok, 0] / uvw[ok, 2], u.ravel()[ok], atol=2e-3)
    np.testing.assert_allclose(uvw[ok, 1] / uvw[ok, 2], v.ravel()[ok], atol=2e-3)
    assert np.isnan(points[5, 7]).all()
    assert ok.sum() == depth.size - 1


def test_backprojection_fills_a_given_buffer():
    out = np.zeros((2, 3, 3), np.float32)
    result = backproject_depth(np.full((2, 3), 2.0), np.diag([1.0, 1.0, 1.0]), out=out)
    assert result is out
    assert out[1, 2].tolist() == [4.0, 2.0, 2.0]


@pytest.mark.parametrize("scale", [0.5, 2.0, 1 / 3])
def test_resized_camera_maps_pixel_centres(scale):
    small = CAM.resized(round(CAM.width * scale), round(CAM.height * scale))
    sx = small.width / CAM.width
    # A ray through the original principal point lands on the resized principal point.
    assert small.cx == pytest.approx((CAM.cx + 0.5) * sx - 0.5)
    assert small.fx == pytest.approx(CAM.fx * sx)


def test_from_k_rejects_bad_shapes():
    with pytest.raises(ValueError, match="3x3 or 3x4"):
        PinholeCamera.from_K(np.eye(2), 4, 4)
