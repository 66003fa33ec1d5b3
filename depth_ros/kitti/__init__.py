"""KITTI I/O in one place, shared by the data engine, the dataset readers and the bag tools.

- ``formats``: the files themselves (RGB and depth PNGs, ``calib_*.txt``, ``timestamps.txt``,
  velodyne ``.bin``, frame names) and ``KittiFormatError``;
- ``calibration``: the raw calibration chain velodyne → camera → image, and the ideal rig's
  ``calib_cam_to_cam.txt``;
- ``drives``: a raw drive on disk (``KittiDrive``, ``RawDrive``) and ``find_drives``;
- ``oxts``: OXTS GPS/IMU packets (fields, reader, writer) and the devkit's poses from them;
- ``splits``: BTS-format split lists (KITTI Eigen, NYU).

Nothing here imports ROS, torch or the data engine.
"""

from depth_ros.kitti.calibration import (
    KITTI_CAMERA_X_M,
    KittiRawCalibration,
    calib_array,
    cam_to_cam_calibration,
    read_rigid_transform,
    velo_to_image_projection,
)
from depth_ros.kitti.drives import KittiDrive, RawDrive, find_drives
from depth_ros.kitti.formats import (
    DEPTH_PNG_SCALE,
    FRAME_NAME_DIGITS,
    VELODYNE_POINT_BYTES,
    KittiFormatError,
    check_velodyne_bin,
    format_timestamp,
    frame_name,
    parse_timestamp,
    parse_timestamp_ns,
    read_calib_file,
    read_depth_png,
    read_rgb_png,
    read_timestamps,
    read_timestamps_ns,
    read_velodyne_bin,
    write_bytes_atomic,
    write_calib_file,
    write_depth_png,
    write_rgb_png,
    write_text_lines,
    write_timestamps,
    write_velodyne_bin,
)
from depth_ros.kitti.oxts import (
    OXTS_DATAFORMAT,
    OXTS_DTYPE,
    OXTS_FIELDS,
    format_oxts_packet,
    oxts_poses,
    read_oxts,
    read_oxts_dir,
    rotation_from_rpy,
)
from depth_ros.kitti.splits import SplitEntry, read_split_file

__all__ = [
    "DEPTH_PNG_SCALE",
    "FRAME_NAME_DIGITS",
    "KITTI_CAMERA_X_M",
    "OXTS_DATAFORMAT",
    "OXTS_DTYPE",
    "OXTS_FIELDS",
    "VELODYNE_POINT_BYTES",
    "KittiDrive",
    "KittiFormatError",
    "KittiRawCalibration",
    "RawDrive",
    "SplitEntry",
    "calib_array",
    "cam_to_cam_calibration",
    "check_velodyne_bin",
    "find_drives",
    "format_oxts_packet",
    "format_timestamp",
    "frame_name",
    "oxts_poses",
    "parse_timestamp",
    "parse_timestamp_ns",
    "read_calib_file",
    "read_depth_png",
    "read_oxts",
    "read_oxts_dir",
    "read_rgb_png",
    "read_rigid_transform",
    "read_split_file",
    "read_timestamps",
    "read_timestamps_ns",
    "read_velodyne_bin",
    "rotation_from_rpy",
    "velo_to_image_projection",
    "write_bytes_atomic",
    "write_calib_file",
    "write_depth_png",
    "write_rgb_png",
    "write_text_lines",
    "write_timestamps",
    "write_velodyne_bin",
]
