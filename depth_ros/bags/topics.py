"""Topic names and frame ids of the bags ``kitti_to_bag`` writes (one place for both).

Frame tree (REP 103/105), every static link from the drive's calibration files::

    world ─/tf (oxts)─► imu_link ─► velodyne ─► camera_00_optical_frame ─► camera_0X_optical_frame

``camera_00_optical_frame`` is KITTI's rectified reference camera (``R_rect_00 ·
T_velo_to_cam``); each rectified camera sits at its ``P_rect_0X`` offset from it. The camera
frame ids are the ones ``kitti_drive_publisher`` stamps, so a bag and the live publisher are
interchangeable.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "/kitti"
WORLD_FRAME = "world"
IMU_FRAME = "imu_link"
VELODYNE_FRAME = "velodyne"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
COLOUR_CAMERAS = (2, 3)
KITTI_CAMERAS = (0, 1, 2, 3)


def camera_frame(camera: int) -> str:
    """Optical frame id of rectified camera ``camera`` (0-3), e.g. ``camera_02_optical_frame``."""
    return f"camera_{camera:02d}_optical_frame"


REFERENCE_CAMERA_FRAME = camera_frame(0)


@dataclass(frozen=True)
class BagTopics:
    """The topic names of a converted drive under ``prefix`` (``/kitti`` by default)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        prefix = "/" + self.prefix.strip("/")
        if prefix != "/" and any(not part for part in prefix[1:].split("/")):
            raise ValueError(f"bad topic prefix {self.prefix!r}")
        object.__setattr__(self, "prefix", "" if prefix == "/" else prefix)

    def image(self, camera: int) -> str:
        """``<prefix>/camera<N>/image_raw`` (rgb8 for colour cameras, mono8 for grey ones)."""
        return f"{self.prefix}/camera{camera}/image_raw"

    def camera_info(self, camera: int) -> str:
        """``<prefix>/camera<N>/camera_info`` (rectified: K, R, P from the calibration, D = 0)."""
        return f"{self.prefix}/camera{camera}/camera_info"

    def groundtruth(self, camera: int) -> str:
        """``<prefix>/camera<N>/depth_groundtruth`` (32FC1 metres, NaN = no data)."""
        return f"{self.prefix}/camera{camera}/depth_groundtruth"

    @property
    def pointcloud(self) -> str:
        """``<prefix>/velo/pointcloud`` (x, y, z, intensity float32)."""
        return f"{self.prefix}/velo/pointcloud"

    @property
    def imu(self) -> str:
        """``<prefix>/oxts/imu`` (sensor_msgs/Imu)."""
        return f"{self.prefix}/oxts/imu"

    @property
    def gps_fix(self) -> str:
        """``<prefix>/oxts/gps/fix`` (sensor_msgs/NavSatFix)."""
        return f"{self.prefix}/oxts/gps/fix"
