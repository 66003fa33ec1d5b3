"""LiDAR-to-camera extrinsics and LiDAR clouds as sparse depth images (ROS-free).

The transform maps LiDAR points to the camera's optical frame (REP 103: x right, y down,
z forward) as a 4×4 homogeneous matrix. It comes from a node parameter (16 numbers,
row-major), from TF (``depth_ros.sensors.tf_lookup``) or from a KITTI raw calibration:
``calib_velo_to_cam.txt`` gives velodyne → camera 00, ``calib_cam_to_cam.txt`` the rectifying
rotation ``R_rect_00`` and camera X's ``P_rect_0X``, whose fourth column is camera X's offset
from camera 00 (the chain of ``depth_ros.geometry.velo_to_camera_points``). The intrinsics
are the running camera's own (``CameraInfo``), so the same transform serves any image size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from depth_ros.geometry import project_points, velo_to_camera_points
from depth_ros.kitti.calibration import KittiRawCalibration
from depth_ros.kitti.formats import KittiFormatError

# Axes only: a LiDAR in REP 103's body convention (x forward, y left, z up) at the camera's
# optical centre. The parameter default; a real rig needs its calibration.
BODY_TO_OPTICAL = np.array([[0.0, -1.0, 0.0, 0.0],
                            [0.0, 0.0, -1.0, 0.0],
                            [1.0, 0.0, 0.0, 0.0],
                            [0.0, 0.0, 0.0, 1.0]])


class ExtrinsicsError(ValueError):
    """An extrinsic transform or calibration file that cannot be used; says why."""


def validate_transform(matrix: np.ndarray, what: str = "lidar_to_camera",
                       tolerance: float = 1e-3) -> np.ndarray:
    """Check a 4×4 rigid transform (finite, last row 0 0 0 1, rotation orthonormal with
    determinant +1) and return it as float64."""
    t = np.asarray(matrix, dtype=np.float64)
    if t.shape != (4, 4):
        raise ExtrinsicsError(f"{what} must be 4×4, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise ExtrinsicsError(f"{what} has non-finite values")
    if not np.allclose(t[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
        raise ExtrinsicsError(f"{what}'s last row must be 0 0 0 1, got {t[3].tolist()}")
    r = t[:3, :3]
    error = float(np.abs(r @ r.T - np.eye(3)).max())
    if error > tolerance:
        raise ExtrinsicsError(f"{what}'s rotation is not orthonormal (|R·Rᵀ - I| = "
                              f"{error:.3g} > {tolerance:g})")
    if np.linalg.det(r) < 0:
        raise ExtrinsicsError(f"{what}'s rotation is a reflection (determinant < 0)")
    return t


def transform_from_parameter(values: Sequence[float]) -> np.ndarray:
    """The 4×4 transform of a 16-number row-major parameter, validated."""
    flat = np.asarray(list(values), dtype=np.float64).ravel()
    if flat.size != 16:
        raise ExtrinsicsError(f"lidar_to_camera needs 16 numbers (a row-major 4×4), got "
                              f"{flat.size}")
    return validate_transform(flat.reshape(4, 4))


def transform_from_kitti(velo_to_cam_path: str | os.PathLike,
                         cam_to_cam_path: str | os.PathLike | None = None,
                         camera: int = 2) -> np.ndarray:
    """Velodyne → rectified camera X's optical frame from KITTI raw calibration files.

    ``cam_to_cam_path`` defaults to ``calib_cam_to_cam.txt`` beside ``velo_to_cam_path``, as
    KITTI ships them.
    """
    velo = Path(velo_to_cam_path)
    cam = Path(cam_to_cam_path) if cam_to_cam_path else velo.with_name("calib_cam_to_cam.txt")
    try:
        calib = KittiRawCalibration.from_files(cam, velo, camera=camera)
    except KittiFormatError as exc:
        raise ExtrinsicsError(f"cannot read KITTI calibration: {exc}") from exc
    # Push the basis through the chain: its images of the origin and the axes give the
    # transform, so the chain itself lives only in geometry.velo_to_camera_points.
    basis = np.vstack([np.zeros(3), np.eye(3)])
    mapped, _ = velo_to_camera_points(basis, calib.T_velo_to_cam, calib.R_rect[:3, :3],
                                      calib.P_rect)
    transform = np.eye(4)
    transform[:3, 3] = mapped[0]
    transform[:3, :3] = (mapped[1:] - mapped[0]).T
    return validate_transform(transform, what=f"KITTI calibration {velo}")


AXES_ONLY_SOURCE = ("the axes-only default lidar_to_camera (no offset): set lidar_to_camera or "
                    "calibration_path, or publish the transform on TF, for a real rig")


def explicit_extrinsics(values: Sequence[float], calibration_path: str,
                        cam_to_cam_path: str = "", camera: int = 2
                        ) -> tuple[np.ndarray, str] | None:
    """The transform the node parameters give and a line saying where it came from, or None
    when they give none.

    A non-empty ``calibration_path`` (KITTI ``calib_velo_to_cam.txt``) wins over ``values``;
    ``values`` at the axes-only default (``BODY_TO_OPTICAL``) count as not given, so that TF
    can be asked. Bad values raise ExtrinsicsError either way.
    """
    if calibration_path:
        transform = transform_from_kitti(calibration_path, cam_to_cam_path or None, camera)
        return transform, f"KITTI calibration {calibration_path} (camera {camera:02d})"
    transform = transform_from_parameter(values)
    if np.allclose(transform, BODY_TO_OPTICAL):
        return None
    return transform, "the lidar_to_camera parameter"


def load_extrinsics(values: Sequence[float], calibration_path: str,
                    cam_to_cam_path: str = "", camera: int = 2) -> tuple[np.ndarray, str]:
    """``explicit_extrinsics``, or the axes-only default with ``AXES_ONLY_SOURCE``."""
    found = explicit_extrinsics(values, calibration_path, cam_to_cam_path, camera)
    return found if found is not None else (BODY_TO_OPTICAL.copy(), AXES_ONLY_SOURCE)


def finite_points(points: np.ndarray) -> np.ndarray:
    """The rows of an N×3 array whose coordinates are all finite (NaN/inf returns dropped)."""
    points = np.asarray(points)
    return points[np.isfinite(points).all(axis=1)]


def sparse_depth_image(points_lidar: np.ndarray, lidar_to_camera: np.ndarray,
                       K: np.ndarray, width: int, height: int) -> np.ndarray:  # noqa: N803
    """LiDAR points (N×3, LiDAR frame) as an H×W float32 depth image, 0 where none landed.

    Nearest point wins a pixel (z-buffering, ``geometry.project_points``); points behind
    the camera, outside the image or not finite are dropped.
    """
    return project_points(transform_points(points_lidar, lidar_to_camera), K, width, height)


def transform_points(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """N×3 (or N×k, first three used) points through a 4×4 rigid transform, float64.

    Written out per axis rather than as ``points @ R.T``: numpy hands that product to a
    multi-threaded BLAS, which on a loaded CPU (inference threads busy) took 40-70 ms for a
    120k-point scan here, against ~2 ms for these nine multiply-adds.
    """
    t = np.asarray(transform, dtype=np.float64)
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    out = np.empty((len(xyz), 3), dtype=np.float64)
    for row in range(3):
        np.multiply(xyz[:, 0], t[row, 0], out=out[:, row])
        out[:, row] += xyz[:, 1] * t[row, 1]
        out[:, row] += xyz[:, 2] * t[row, 2]
        out[:, row] += t[row, 3]
    return out
