"""KITTI raw calibration: the camera rig's ``calib_cam_to_cam.txt`` and the chain velodyne →
camera 00 → rectified camera 0X → image.

Files of a KITTI raw date (``<root>/<date>/``)::

    calib_cam_to_cam.txt     P_rect_0X (3×4), R_rect_00 (3×3), S_rect_0X
    calib_velo_to_cam.txt    R (3×3), T (3): velodyne → camera 00 (unrectified)
    calib_imu_to_velo.txt    R (3×3), T (3): IMU/GPS → velodyne
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_ros.geometry import PinholeCamera, project_velodyne
from depth_ros.kitti.formats import KittiFormatError, read_calib_file

# x (metres, rightward) of cameras 00-03 in camera 00's rectified frame: grey stereo pair
# 0.54 m apart, the colour cameras 0.06 m left of each grey one (KITTI's sensor set-up).
KITTI_CAMERA_X_M = (0.0, 0.54, -0.06, 0.48)


def cam_to_cam_calibration(camera: PinholeCamera, calib_time: str = "09-Jan-2012 13:57:47",
                           corner_dist_m: float = 0.0995) -> dict[str, np.ndarray | str]:
    """A ``calib_cam_to_cam.txt`` for an ideal rectified rig with KITTI's four-camera layout.

    Every camera gets ``camera``'s intrinsics, no distortion and identity rotations; the
    translations follow ``KITTI_CAMERA_X_M``, so ``P_rect_0X[0, 3] = -fx · x_0X`` as in KITTI
    (positive for the colour camera 02 left of 00, negative for 01 and 03).
    """
    size = np.array([camera.width, camera.height], dtype=np.float64)
    calib: dict[str, np.ndarray | str] = {"calib_time": calib_time,
                                          "corner_dist": np.array([corner_dist_m])}
    for index, x_m in enumerate(KITTI_CAMERA_X_M):
        translation = np.array([-x_m, 0.0, 0.0]) + 0.0  # + 0.0: no "-0.0" in the file
        calib[f"S_{index:02d}"] = size
        calib[f"K_{index:02d}"] = camera.K
        calib[f"D_{index:02d}"] = np.zeros(5)
        calib[f"R_{index:02d}"] = np.eye(3)
        calib[f"T_{index:02d}"] = translation
        calib[f"S_rect_{index:02d}"] = size
        calib[f"R_rect_{index:02d}"] = np.eye(3)
        calib[f"P_rect_{index:02d}"] = camera.K @ np.hstack([np.eye(3), translation[:, None]])
    return calib


def calib_array(calib: dict, key: str, size: int, path: str | os.PathLike) -> np.ndarray:
    """``calib[key]``, checked to hold ``size`` numbers; ``path`` names the file in the error."""
    value = calib.get(key)
    if value is None:
        raise KittiFormatError(f"{path}: missing key {key!r}")
    if not isinstance(value, np.ndarray) or value.size != size:
        raise KittiFormatError(f"{path}: {key} must hold {size} numbers, got {value!r}")
    return value


def read_rigid_transform(path: str | os.PathLike) -> np.ndarray:
    """A 4×4 float64 transform from a KITTI ``R: (9) / T: (3)`` file (velo_to_cam, imu_to_velo)."""
    path = Path(path)
    calib = read_calib_file(path)
    transform = np.eye(4)
    transform[:3, :3] = calib_array(calib, "R", 9, path).reshape(3, 3)
    transform[:3, 3] = calib_array(calib, "T", 3, path)
    return transform


@dataclass(frozen=True)
class KittiRawCalibration:
    """The calibration chain of one KITTI raw date for one rectified camera.

    Attributes:
        P_rect: 3×4 projection of the rectified camera (``P_rect_0X``).
        R_rect: 4×4 rectifying rotation of camera 00 (``R_rect_00`` padded), as the devkit uses.
        T_velo_to_cam: 4×4 velodyne → camera 00 (``calib_velo_to_cam.txt``).
        T_imu_to_velo: 4×4 IMU → velodyne, None when ``calib_imu_to_velo.txt`` is absent.
        width, height: the rectified image size (``S_rect_0X``).
    """

    P_rect: np.ndarray
    R_rect: np.ndarray
    T_velo_to_cam: np.ndarray
    T_imu_to_velo: np.ndarray | None
    width: int
    height: int

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the conventional name of the matrix
        """3×3 intrinsics of the rectified camera."""
        return self.P_rect[:, :3].copy()

    def velo_to_image(self) -> np.ndarray:
        """3×4 ``P_rect_0X · R_rect_00 · T_velo_to_cam``: velodyne points to image pixels."""
        return self.P_rect @ self.R_rect @ self.T_velo_to_cam

    def velo_to_rect_cam(self) -> np.ndarray:
        """4×4 ``R_rect_00 · T_velo_to_cam``: velodyne to rectified camera 00 coordinates."""
        return self.R_rect @ self.T_velo_to_cam

    def sparse_depth(self, points_velo: np.ndarray, width: int | None = None,
                     height: int | None = None) -> np.ndarray:
        """Velodyne points (N×3 or N×4) as an H×W float32 depth image of this camera (0 = no
        return), z-buffered; the size defaults to ``S_rect``."""
        return project_velodyne(points_velo, self.T_velo_to_cam, self.R_rect[:3, :3],
                                self.P_rect, width or self.width, height or self.height)

    @classmethod
    def from_files(cls, cam_to_cam_path: str | os.PathLike, velo_to_cam_path: str | os.PathLike,
                   imu_to_velo_path: str | os.PathLike | None = None,
                   camera: int = 2) -> KittiRawCalibration:
        """Read the three calibration files of a KITTI raw date."""
        cam_path = Path(cam_to_cam_path)
        cam = read_calib_file(cam_path)
        p_rect = calib_array(cam, f"P_rect_{camera:02d}", 12, cam_path).reshape(3, 4)
        r_rect = np.eye(4)
        r_rect[:3, :3] = calib_array(cam, "R_rect_00", 9, cam_path).reshape(3, 3)
        width, height = calib_array(cam, f"S_rect_{camera:02d}", 2, cam_path)
        imu = None if imu_to_velo_path is None else read_rigid_transform(imu_to_velo_path)
        return cls(p_rect, r_rect, read_rigid_transform(velo_to_cam_path), imu,
                   int(round(width)), int(round(height)))


def velo_to_image_projection(cam_to_cam_path: str | os.PathLike,
                             velo_to_cam_path: str | os.PathLike,
                             camera: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(3×4 velodyne → image ``P_rect_0X · R_rect_00 · T_velo_to_cam``, 4×4 velodyne →
    rectified camera 00 ``R_rect_00 · T_velo_to_cam``), as the KITTI devkit and monodepth2's
    ``generate_depth_map`` build them."""
    calib = KittiRawCalibration.from_files(cam_to_cam_path, velo_to_cam_path, camera=camera)
    return calib.velo_to_image(), calib.velo_to_rect_cam()
