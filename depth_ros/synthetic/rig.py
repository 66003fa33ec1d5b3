"""The KITTI sensor rig around the synthetic camera: velodyne, OXTS unit and right camera.

Extrinsics are KITTI's own, from the 2011_09_26 recordings (``calib_velo_to_cam.txt`` and
``calib_imu_to_velo.txt``): the velodyne sits about 0.27 m behind and 0.08 m above camera 00
and is tilted by ~0.85° against it; the OXTS unit is 0.81 m behind, 0.32 m left of and 0.80 m
below the velodyne. The synthetic rectified rig has identity ``R_rect_00`` (see
``kitti.cam_to_cam_calibration``), so camera 00's unrectified frame is its rectified one.
"""

from __future__ import annotations

import numpy as np

from depth_ros import kitti
from depth_ros.synthetic.pose import CameraPose

VELO_TO_CAM_R = np.array([[7.533745e-03, -9.999714e-01, -6.166020e-04],
                          [1.480249e-02, 7.280733e-04, -9.998902e-01],
                          [9.998621e-01, 7.523790e-03, 1.480755e-02]])
VELO_TO_CAM_T = np.array([-4.069766e-03, -7.631618e-02, -2.717806e-01])
VELO_TO_CAM_TIME = "15-Mar-2012 11:37:16"
IMU_TO_VELO_R = np.array([[9.999976e-01, 7.553071e-04, -2.035826e-03],
                          [-7.854027e-04, 9.998898e-01, -1.482298e-02],
                          [2.024406e-03, 1.482454e-02, 9.998881e-01]])
IMU_TO_VELO_T = np.array([-8.086759e-01, 3.195559e-01, -7.997231e-01])
IMU_TO_VELO_TIME = "25-May-2012 16:47:16"


def _homogeneous(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = translation
    return out


def velo_to_cam_matrix() -> np.ndarray:
    """4×4 ``T_velo_to_cam``: velodyne frame to camera 00's frame."""
    return _homogeneous(VELO_TO_CAM_R, VELO_TO_CAM_T)


def imu_to_velo_matrix() -> np.ndarray:
    """4×4 ``T_imu_to_velo``: OXTS frame to velodyne frame."""
    return _homogeneous(IMU_TO_VELO_R, IMU_TO_VELO_T)


def camera_to_cam0_matrix(camera_index: int) -> np.ndarray:
    """4×4 transform from camera ``camera_index``'s rectified frame to camera 00's."""
    # Camera X sits at x = KITTI_CAMERA_X_M[X] in camera 00's frame.
    return _homogeneous(np.eye(3), np.array([kitti.KITTI_CAMERA_X_M[camera_index], 0.0, 0.0]))


def sensor_to_world(camera_pose: CameraPose, camera_index: int, sensor: str) -> np.ndarray:
    """4×4 sensor-to-world transform of ``sensor`` (``velo``, ``imu`` or ``cam0``..``cam3``)
    on a rig whose camera ``camera_index`` has pose ``camera_pose``."""
    cam0_to_world = camera_pose.matrix @ np.linalg.inv(camera_to_cam0_matrix(camera_index))
    if sensor.startswith("cam"):
        return cam0_to_world @ camera_to_cam0_matrix(int(sensor[3:]))
    velo_to_world = cam0_to_world @ velo_to_cam_matrix()
    if sensor == "velo":
        return velo_to_world
    if sensor == "imu":
        return velo_to_world @ imu_to_velo_matrix()
    raise ValueError(f"unknown sensor {sensor!r}; expected velo, imu or cam0..cam3")


def camera_pose_of(camera_pose: CameraPose, camera_index: int, other_index: int) -> CameraPose:
    """Pose of camera ``other_index`` on the rig whose camera ``camera_index`` is at
    ``camera_pose`` (the rectified cameras share one orientation)."""
    matrix = sensor_to_world(camera_pose, camera_index, f"cam{other_index}")
    return CameraPose(matrix[:3, :3], matrix[:3, 3])


def velo_to_cam_calibration() -> dict[str, np.ndarray | str]:
    """``calib_velo_to_cam.txt`` contents (KITTI's keys; ``delta_f``/``delta_c`` are zero)."""
    return {"calib_time": VELO_TO_CAM_TIME, "R": VELO_TO_CAM_R, "T": VELO_TO_CAM_T,
            "delta_f": np.zeros(2), "delta_c": np.zeros(2)}


def imu_to_velo_calibration() -> dict[str, np.ndarray | str]:
    """``calib_imu_to_velo.txt`` contents."""
    return {"calib_time": IMU_TO_VELO_TIME, "R": IMU_TO_VELO_R, "T": IMU_TO_VELO_T}
