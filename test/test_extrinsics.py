"""LiDAR-to-camera extrinsics: the 16-number parameter, KITTI calibration files, projection."""

from __future__ import annotations

import numpy as np
import pytest

from depth_ros.kitti import KittiRawCalibration, write_calib_file
from depth_ros.sensors.extrinsics import (
    BODY_TO_OPTICAL,
    ExtrinsicsError,
    finite_points,
    load_extrinsics,
    sparse_depth_image,
    transform_from_kitti,
    transform_from_parameter,
    transform_points,
)


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    return (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
            @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))


@pytest.fixture
def kitti_calib(tmp_path):
    """KITTI-like calibration files with a non-trivial rectification and camera 02 offset."""
    r_velo = _rotation(0.01, -0.02, 0.005) @ BODY_TO_OPTICAL[:3, :3]
    t_velo = np.array([-0.004, -0.076, -0.27])
    write_calib_file(tmp_path / "calib_velo_to_cam.txt",
                     {"calib_time": "15-Mar-2012 11:37:16", "R": r_velo, "T": t_velo})
    k = np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]])
    p02 = np.hstack([k, k @ np.array([[0.06], [-0.0003], [0.0027]])])
    write_calib_file(tmp_path / "calib_cam_to_cam.txt", {
        "calib_time": "09-Jan-2012 13:57:47", "R_rect_00": _rotation(0.003, 0.008, -0.002),
        "P_rect_00": np.hstack([k, np.zeros((3, 1))]), "S_rect_02": np.array([1242.0, 375.0]),
        "P_rect_02": p02})
    return tmp_path


def test_kitti_files_give_the_devkit_projection(kitti_calib):
    transform = transform_from_kitti(kitti_calib / "calib_velo_to_cam.txt")
    calib = KittiRawCalibration.from_files(kitti_calib / "calib_cam_to_cam.txt",
                                           kitti_calib / "calib_velo_to_cam.txt")
    # Pixels from our 4×4 and the camera's K equal the devkit's P_rect·R_rect·T_velo chain.
    points = np.random.default_rng(0).uniform([3, -10, -2], [60, 10, 2], (5000, 3))
    homogeneous = np.hstack([points, np.ones((len(points), 1))])
    devkit = homogeneous @ calib.velo_to_image().T
    ours = (homogeneous @ transform.T)[:, :3] @ calib.K.T
    np.testing.assert_allclose(ours[:, :2] / ours[:, 2:], devkit[:, :2] / devkit[:, 2:],
                               atol=1e-6)
    sparse = sparse_depth_image(points, transform, calib.K, calib.width, calib.height)
    np.testing.assert_array_equal(sparse, calib.sparse_depth(points))
    assert (sparse > 0).sum() > 1000


def test_parameter_transform_round_trips_and_load_prefers_the_calibration(kitti_calib):
    matrix = np.eye(4)
    matrix[:3, :3] = _rotation(0.1, 0.2, 0.3)
    matrix[:3, 3] = [0.1, -0.2, 0.3]
    np.testing.assert_array_equal(transform_from_parameter(matrix.ravel().tolist()), matrix)
    transform, source = load_extrinsics(matrix.ravel(), "")
    assert source == "the lidar_to_camera parameter"
    _, default_source = load_extrinsics(BODY_TO_OPTICAL.ravel(), "")
    assert "axes-only default" in default_source
    velo = str(kitti_calib / "calib_velo_to_cam.txt")
    transform, source = load_extrinsics(matrix.ravel(), velo)
    np.testing.assert_array_equal(transform, transform_from_kitti(velo))
    assert "KITTI calibration" in source


@pytest.mark.parametrize("values, words", [
    ([1.0] * 12, "16 numbers"),
    (np.diag([1.0, 1.0, 1.0, 2.0]).ravel(), "last row"),
    (np.diag([2.0, 1.0, 1.0, 1.0]).ravel(), "not orthonormal"),
    (np.diag([-1.0, 1.0, 1.0, 1.0]).ravel(), "reflection"),
    ([np.nan] + [0.0] * 15, "non-finite"),
])
def test_bad_parameter_transforms_are_rejected_with_the_reason(values, words):
    with pytest.raises(ExtrinsicsError, match=words):
        transform_from_parameter(values)


def test_missing_or_incomplete_calibration_names_the_file(kitti_calib):
    with pytest.raises(ExtrinsicsError, match="not found"):
        transform_from_kitti(kitti_calib / "nope.txt")
    (kitti_calib / "calib_cam_to_cam.txt").write_text("calib_time: x\n")
    with pytest.raises(ExtrinsicsError, match=r"calib_cam_to_cam\.txt: missing key 'P_rect_02'"):
        transform_from_kitti(kitti_calib / "calib_velo_to_cam.txt")


def test_projection_keeps_the_nearest_point_and_drops_non_finite_and_behind():
    k = np.array([[100.0, 0, 10], [0, 100.0, 5], [0, 0, 1]])
    lidar = np.array([[5.0, 0, 0], [3.0, 0, 0], [np.nan, 0, 0], [np.inf, 1, 1],
                      [-4.0, 0, 0]])  # x forward: two on the optical axis, one behind
    points = finite_points(lidar)
    assert len(points) == 3
    sparse = sparse_depth_image(points, BODY_TO_OPTICAL, k, 20, 10)
    assert sparse[5, 10] == pytest.approx(3.0) and (sparse > 0).sum() == 1


def test_transform_points_matches_the_matrix_product():
    rng = np.random.default_rng(3)
    transform = np.eye(4)
    transform[:3, :3] = _rotation(*rng.uniform(-1, 1, 3))
    transform[:3, 3] = rng.uniform(-2, 2, 3)
    points = rng.uniform(-50, 50, (1000, 4)).astype(np.float32)  # x, y, z, intensity
    homogeneous = np.hstack([points[:, :3].astype(np.float64), np.ones((1000, 1))])
    np.testing.assert_allclose(transform_points(points, transform),
                               (homogeneous @ transform.T)[:, :3], rtol=1e-12, atol=1e-12)
