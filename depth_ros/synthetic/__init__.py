"""The synthetic data engine: procedural street scenes ray-cast to RGB and exact depth, with a
simulated 64-beam LiDAR and the rest of KITTI's rig, written as KITTI raw drives. Deterministic
by seed."""

from depth_ros.synthetic.drive import (
    CAMERA_PROFILES,
    FRAME_PERIOD_S,
    KITTI_CAMERA,
    DrivePlan,
    Trajectory,
    drive_directory,
    plan_drive,
    write_synthetic_drive,
)
from depth_ros.synthetic.lidar import LidarModel, LidarScan, cast_lidar
from depth_ros.synthetic.pose import CameraPose
from depth_ros.synthetic.raycast import RayHits
from depth_ros.synthetic.render import MAX_DEPTH_M, cast_rays, render_frame
from depth_ros.synthetic.scene import BoxKind, Lighting, StreetLayout, StreetScene

__all__ = [
    "CAMERA_PROFILES",
    "FRAME_PERIOD_S",
    "KITTI_CAMERA",
    "MAX_DEPTH_M",
    "BoxKind",
    "CameraPose",
    "DrivePlan",
    "LidarModel",
    "LidarScan",
    "Lighting",
    "RayHits",
    "StreetLayout",
    "StreetScene",
    "Trajectory",
    "cast_lidar",
    "cast_rays",
    "drive_directory",
    "plan_drive",
    "render_frame",
    "write_synthetic_drive",
]
