"""A KITTI raw drive checked as a whole before anything is written from it.

``DriveSource`` opens a synced + rectified drive, picks its sensors, and raises one
``KittiFormatError`` naming the file for everything a conversion would otherwise stumble on
half-way: a missing frame (a gap in the numbering, or a sensor without a frame the cameras
have), a ``timestamps.txt`` with fewer lines than its frames need, a truncated velodyne
``.bin``, a missing calibration key, a NaN or infinity in any calibration file, a
missing ``calib_velo_to_cam.txt`` for a bag with the LiDAR or OXTS in it and a missing
``calib_imu_to_velo.txt`` for one with OXTS (without them /tf_static could not link those
sensors to the cameras). Frame data are read later, one frame at a time.

A drive without velodyne ``.bin`` files but with its projected scans
(``proj_depth/velodyne_raw/image_0X``, as KITTI's depth-completion data and kitti_dev ship
them) can give its LiDAR from those: ``lidar_from_depth=X`` back-projects each frame's
projected scan through camera X's rectified intrinsics into a cloud in camera X's optical
frame (REP 103), stamped as camera X's image. Projected again with the same intrinsics, each
point lands on the pixel it came from with the depth it had (pixel centres at integer
coordinates, as ``geometry.project_points`` rounds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.lib import recfunctions

from depth_ros.bags import topics
from depth_ros.geometry import backproject_depth
from depth_ros.kitti.calibration import read_rigid_transform
from depth_ros.kitti.drives import KittiDrive
from depth_ros.kitti.formats import (
    KittiFormatError,
    check_velodyne_bin,
    read_calib_file,
    read_depth_png,
    read_rgb_png,
    read_timestamps_ns,
    read_velodyne_bin,
)
from depth_ros.kitti.oxts import oxts_poses, read_oxts_dir

VELODYNE_DIR = "velodyne_points"
OXTS_DIR = "oxts"
CAM_TO_CAM = "calib_cam_to_cam.txt"
VELO_TO_CAM = "calib_velo_to_cam.txt"
IMU_TO_VELO = "calib_imu_to_velo.txt"
_STEREO_LEFT = {0: 0, 1: 0, 2: 2, 3: 2}  # each camera's stereo pair and its left camera


@dataclass(frozen=True, eq=False)
class CameraStream:
    """One rectified camera of the drive: its files, stamps and calibration."""

    index: int
    drive: KittiDrive
    stamps_ns: np.ndarray
    projection: np.ndarray  # P_rect_0X, 3×4
    width: int
    height: int
    left_projection: np.ndarray | None = None  # P_rect of its stereo pair's left camera

    @property
    def frame_id(self) -> str:
        """The camera's optical frame id."""
        return topics.camera_frame(self.index)

    @property
    def colour(self) -> bool:
        """Cameras 02 and 03 are colour (rgb8); 00 and 01 grey (mono8)."""
        return self.index >= 2

    def ros_projection(self) -> np.ndarray:
        """P for CameraInfo: KITTI's P_rect_0X re-based on the left camera of the stereo pair,
        so Tx = 0 for cameras 00 and 02 and Tx = −fx·B for 01 and 03 (ROS's convention;
        KITTI's own P_rect_0X are all relative to camera 00)."""
        return stereo_projection(self.projection, self.left_projection)

    def image(self, position: int) -> np.ndarray:
        """The frame's pixels: H×W×3 uint8 RGB (colour) or H×W uint8 (grey), size-checked."""
        path = self.drive.image_path(position)
        if self.colour:
            pixels = read_rgb_png(path)
        else:
            pixels = cv2.imread(os.fspath(path), cv2.IMREAD_GRAYSCALE)
            if pixels is None:
                raise KittiFormatError(f"cannot read image {path}")
        if pixels.shape[:2] != (self.height, self.width):
            raise KittiFormatError(f"{path} is {pixels.shape[1]}×{pixels.shape[0]}, the "
                                   f"calibration's S_rect_{self.index:02d} says "
                                   f"{self.width}×{self.height}")
        return pixels

    def groundtruth(self, position: int) -> np.ndarray | None:
        """The frame's ground-truth depth (float32 metres, NaN = no data), or None without
        a ``proj_depth/groundtruth`` PNG for it (KITTI annotates all but 5 frames each end)."""
        path = self.drive.groundtruth_path(position)
        if not path.is_file():
            return None
        depth = read_depth_png(path)
        if depth.shape != (self.height, self.width):
            raise KittiFormatError(f"{path} is {depth.shape[1]}×{depth.shape[0]}, the images "
                                   f"are {self.width}×{self.height}")
        depth[depth <= 0] = np.nan
        return depth


def stereo_projection(projection: np.ndarray, left_projection: np.ndarray | None) -> np.ndarray:
    """``projection`` (3×4) with its fourth column taken relative to ``left_projection``'s
    camera centre (unchanged when there is no left camera)."""
    p = np.array(projection, dtype=np.float64).reshape(3, 4)
    if left_projection is None:
        return p
    k = p[:, :3]
    own = np.linalg.solve(k, p[:, 3])
    left = np.linalg.solve(np.asarray(left_projection, dtype=np.float64)[:, :3],
                           np.asarray(left_projection, dtype=np.float64)[:, 3])
    p[:, 3] = k @ (own - left)
    return p


def _frame_numbers(stems: list[str], directory: Path) -> None:
    """Raise if the frame numbers have a gap (a frame missing from every sensor)."""
    try:
        numbers = [int(stem) for stem in stems]
    except ValueError:
        raise KittiFormatError(f"{directory}: frame files must be numbered "
                               f"(0000000000...), got {stems[:3]}") from None
    for expected, (number, stem) in enumerate(zip(numbers, stems, strict=True), numbers[0]):
        if number != expected:
            raise KittiFormatError(f"{directory}: frame {expected:010d} is missing (the next "
                                   f"file is {stem})")


def _check_same_frames(name: str, directory: Path, suffix: str, reference: list[str],
                       reference_dir: Path) -> None:
    frames = sorted(p.stem for p in directory.glob(f"*{suffix}"))
    if frames != reference:
        missing = sorted(set(reference) - set(frames))[:3]
        extra = sorted(set(frames) - set(reference))[:3]
        raise KittiFormatError(f"{directory}: {len(frames)} {name} frames for "
                               f"{len(reference)} in {reference_dir} (missing {missing}, "
                               f"extra {extra})")


def _stamps_for(path: Path, frames: list[str]) -> np.ndarray:
    """The stamps of ``frames``: one line each, or, from a longer file, line N for frame N
    (KITTI's numbering: subsets of a drive, such as KITTI_tiny's or the depth-completion
    frames, keep the whole drive's ``timestamps.txt``)."""
    stamps = read_timestamps_ns(path)
    if len(stamps) == len(frames):
        return stamps
    last = int(frames[-1])
    if len(stamps) > last:
        return stamps[[int(frame) for frame in frames]]
    raise KittiFormatError(f"{path} has {len(stamps)} lines for {len(frames)} frames (numbered "
                           f"up to {frames[-1]})")


def read_finite_calib_file(path: Path) -> dict[str, np.ndarray | str]:
    """``read_calib_file``, refusing a NaN or infinity in any numeric entry: one would carry
    into every transform and projection of the bag unnoticed."""
    calib = read_calib_file(path)
    for key, value in calib.items():
        if isinstance(value, np.ndarray) and not np.isfinite(value).all():
            raise KittiFormatError(f"{path}: {key} holds a non-finite number "
                                   f"({' '.join(f'{v:g}' for v in value)})")
    return calib


def _calib_matrix(calib: dict, key: str, size: int, path: Path) -> np.ndarray:
    value = calib.get(key)
    if not isinstance(value, np.ndarray) or value.size != size:
        raise KittiFormatError(f"{path}: {key} missing or not {size} numbers")
    return value


class DriveSource:
    """A validated KITTI raw drive: which sensors go into the bag, and their frames.

    Args:
        path: the ``<date>_drive_<NNNN>_sync`` directory (calibration files in it or its
            parent, as KITTI ships them).
        cameras: camera numbers (0-3); None = the colour cameras (02, 03) the drive has.
        lidar: include ``velodyne_points`` when the drive has it.
        oxts: include the OXTS GPS/IMU packets when the drive has them.
        groundtruth: include ``proj_depth/groundtruth`` depth where it exists.
        start, end: the frame range, as list indices (``end`` exclusive; None = to the end).
        lidar_from_depth: a camera number (0-3): the LiDAR from that camera's projected scans
            (``proj_depth/velodyne_raw/image_0X``) instead of ``velodyne_points`` (see the
            module docstring); None: ``velodyne_points`` where the drive has it.
    """

    def __init__(self, path: str | os.PathLike, cameras: tuple[int, ...] | None = None,
                 lidar: bool = True, oxts: bool = True, groundtruth: bool = True,
                 start: int = 0, end: int | None = None,
                 lidar_from_depth: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise KittiFormatError(f"drive directory not found: {self.path}")
        if cameras is None:
            cameras = tuple(c for c in topics.COLOUR_CAMERAS
                            if (self.path / f"image_{c:02d}" / "data").is_dir())
            if not cameras:
                raise KittiFormatError(f"not a KITTI drive: no image_02/data or image_03/data "
                                       f"in {self.path}")
        bad = [c for c in cameras if c not in topics.KITTI_CAMERAS]
        if bad or len(set(cameras)) != len(cameras) or not cameras:
            raise ValueError(f"cameras must be distinct numbers from 0-3, got {list(cameras)}")
        drives = [KittiDrive(self.path, camera=c) for c in cameras]
        reference = drives[0]
        self.frames = reference.frames
        _frame_numbers(self.frames, reference.image_dir)
        for drive in drives[1:]:
            _check_same_frames(f"image_{drive.camera:02d}", drive.image_dir, ".png",
                               self.frames, reference.image_dir)
        count = len(self.frames)
        self.start, self.end = self._frame_range(start, end, count)

        self.cam_to_cam_path = reference.calib_path(CAM_TO_CAM)
        cam_calib = read_finite_calib_file(self.cam_to_cam_path)
        projections = {c: _calib_matrix(cam_calib, f"P_rect_{c:02d}", 12,
                                        self.cam_to_cam_path).reshape(3, 4)
                       for c in topics.KITTI_CAMERAS if f"P_rect_{c:02d}" in cam_calib}
        self.projections = projections
        self.cameras: list[CameraStream] = []
        for drive in drives:
            c = drive.camera
            if c not in projections:
                raise KittiFormatError(f"{self.cam_to_cam_path}: P_rect_{c:02d} missing")
            width, height = _calib_matrix(cam_calib, f"S_rect_{c:02d}", 2, self.cam_to_cam_path)
            stamps = _stamps_for(drive.image_dir.parent / "timestamps.txt", self.frames)
            left = projections.get(_STEREO_LEFT[c])
            self.cameras.append(CameraStream(c, drive, stamps, projections[c],
                                             int(round(width)), int(round(height)), left))
        r_rect = np.eye(4)
        r_rect[:3, :3] = _calib_matrix(cam_calib, "R_rect_00", 9,
                                       self.cam_to_cam_path).reshape(3, 3)
        self.r_rect_00 = r_rect
        if not groundtruth:
            self.groundtruth_cameras: list[CameraStream] = []
        else:
            self.groundtruth_cameras = [cam for cam in self.cameras
                                        if cam.drive.groundtruth_dir.is_dir()]

        self.velodyne_dir = self.path / VELODYNE_DIR / "data"
        self.velodyne_stamps_ns: np.ndarray | None = None
        self.depth_lidar: KittiDrive | None = None
        if lidar and lidar_from_depth is not None:
            self._use_projected_scans(lidar_from_depth, reference)
        elif lidar and self.velodyne_dir.is_dir():
            _check_same_frames("velodyne", self.velodyne_dir, ".bin", self.frames,
                               reference.image_dir)
            self.velodyne_stamps_ns = _stamps_for(self.path / VELODYNE_DIR / "timestamps.txt",
                                                  self.frames)
            for position in range(self.start, self.end):
                check_velodyne_bin(self.velodyne_path(position))
        oxts_dir = self.path / OXTS_DIR / "data"
        self.oxts_stamps_ns: np.ndarray | None = None
        self.oxts_packets: np.ndarray | None = None
        if oxts and oxts_dir.is_dir():
            _check_same_frames("oxts", oxts_dir, ".txt", self.frames, reference.image_dir)
            self.oxts_stamps_ns = _stamps_for(self.path / OXTS_DIR / "timestamps.txt", self.frames)
            self.oxts_packets = read_oxts_dir(oxts_dir)
        # The rig's links in /tf_static: the LiDAR (and the OXTS pose in /tf, which hangs off
        # imu_link) mean nothing without them, so a bag with those sensors needs the files.
        self.velo_to_cam = self._transform(
            reference, VELO_TO_CAM, (self.has_lidar and self.depth_lidar is None) or self.has_oxts)
        self.imu_to_velo = self._transform(reference, IMU_TO_VELO, self.has_oxts)

    def _use_projected_scans(self, camera: int, reference: KittiDrive) -> None:
        """Take the LiDAR from camera ``camera``'s projected scans (checked like a sensor)."""
        if camera not in topics.KITTI_CAMERAS:
            raise ValueError(f"lidar_from_depth must be a camera number 0-3, got {camera}")
        if camera not in self.projections:
            raise KittiFormatError(f"{self.cam_to_cam_path}: P_rect_{camera:02d} missing (the "
                                   "projected scans need that camera's intrinsics)")
        scans = self._projected_dir(camera)
        if not scans.is_dir():
            raise KittiFormatError(f"no projected scans for camera {camera:02d}: {scans} not "
                                   "found")
        drive = KittiDrive(self.path, camera=camera)  # its timestamps.txt stamps the clouds
        _check_same_frames("projected LiDAR", scans, ".png", self.frames, reference.image_dir)
        self.velodyne_stamps_ns = _stamps_for(drive.image_dir.parent / "timestamps.txt",
                                              self.frames)
        self.depth_lidar = drive

    def _projected_dir(self, camera: int) -> Path:
        return self.path / "proj_depth" / "velodyne_raw" / f"image_{camera:02d}"

    @property
    def lidar_frame(self) -> str:
        """The frame id of the clouds: the velodyne's, or the camera's whose projected scans
        they come from."""
        if self.depth_lidar is not None:
            return topics.camera_frame(self.depth_lidar.camera)
        return topics.VELODYNE_FRAME

    @staticmethod
    def _frame_range(start: int, end: int | None, count: int) -> tuple[int, int]:
        end = count if end is None else end
        if not 0 <= start < end <= count:
            raise ValueError(f"frame range {start}:{end} is outside the drive's 0:{count}")
        return start, end

    def _transform(self, drive: KittiDrive, name: str, required: bool) -> np.ndarray | None:
        """The rigid transform of calibration file ``name``; None where it is absent and not
        ``required``. A file that is there is read and checked either way."""
        try:
            path = drive.calib_path(name)
        except KittiFormatError:
            if not required:
                return None
            needs = [what for what, used in (("the LiDAR", self.has_lidar),
                                             ("the OXTS /tf", self.has_oxts)) if used]
            raise KittiFormatError(
                f"calibration file not found: {drive.path / name} (nor in its parent); "
                f"{' and '.join(needs)} need it for the transforms in /tf_static (leave "
                f"them out with --no-lidar --no-oxts)") from None
        read_finite_calib_file(path)
        return read_rigid_transform(path)

    @property
    def has_lidar(self) -> bool:
        """Whether velodyne scans go into the bag."""
        return self.velodyne_stamps_ns is not None

    @property
    def has_oxts(self) -> bool:
        """Whether OXTS packets go into the bag."""
        return self.oxts_packets is not None

    def __len__(self) -> int:
        return self.end - self.start

    def positions(self) -> range:
        """List indices of the frames in the selected range."""
        return range(self.start, self.end)

    def velodyne_path(self, position: int) -> Path:
        """The scan file of a frame."""
        return self.velodyne_dir / f"{self.frames[position]}.bin"

    def scan(self, position: int) -> np.ndarray:
        """N×4 float32 (x, y, z, reflectance) scan of a frame, in ``lidar_frame``
        (reflectance 0 for a scan back-projected from its projection, which has none)."""
        if self.depth_lidar is None:
            return read_velodyne_bin(self.velodyne_path(position))
        camera = self.depth_lidar.camera
        path = self._projected_dir(camera) / f"{self.frames[position]}.png"
        depth = read_depth_png(path)
        v, u = np.nonzero(depth > 0)
        points = np.zeros((len(v), 4), dtype=np.float32)
        points[:, :3] = backproject_depth(depth, self.projections[camera][:, :3])[v, u]
        return points

    def first_stamp_ns(self) -> int:
        """The earliest stamp of any sensor in the selected range."""
        candidates = [int(cam.stamps_ns[self.start]) for cam in self.cameras]
        for stamps in (self.velodyne_stamps_ns, self.oxts_stamps_ns):
            if stamps is not None:
                candidates.append(int(stamps[self.start]))
        return min(candidates)

    def static_transforms(self) -> list[tuple[str, str, np.ndarray]]:
        """(parent, child, 4×4 child-to-parent) links of the sensor rig, from the calibration:
        imu_link → velodyne (``calib_imu_to_velo``), velodyne → camera 00 rectified
        (``R_rect_00 · T_velo_to_cam``), camera 00 → each camera (``P_rect_0X`` offset)."""
        links = []
        if self.velo_to_cam is not None:
            if self.imu_to_velo is not None:
                links.append((topics.IMU_FRAME, topics.VELODYNE_FRAME,
                              np.linalg.inv(self.imu_to_velo)))
            links.append((topics.VELODYNE_FRAME, topics.REFERENCE_CAMERA_FRAME,
                          np.linalg.inv(self.r_rect_00 @ self.velo_to_cam)))
        placed = [cam.index for cam in self.cameras]
        if self.depth_lidar is not None and self.depth_lidar.camera not in placed:
            placed.append(self.depth_lidar.camera)  # the clouds' frame needs its link too
        for index in placed:
            if index == 0:
                continue
            # P_rect_0X = K [I | t]: camera X's coordinates are camera 00's plus t.
            projection = self.projections[index]
            offset = np.linalg.solve(projection[:, :3], projection[:, 3])
            link = np.eye(4)
            link[:3, 3] = -offset
            links.append((topics.REFERENCE_CAMERA_FRAME, topics.camera_frame(index), link))
        return links

    def oxts_poses(self) -> np.ndarray:
        """N×4×4 poses of the OXTS unit in the world frame (the KITTI devkit's
        ``convertOxtsToPose``: Mercator, relative to the drive's first packet)."""
        if self.oxts_packets is None:
            raise KittiFormatError(f"{self.path} has no oxts packets")
        plain = recfunctions.structured_to_unstructured(self.oxts_packets, dtype=np.float64)
        return oxts_poses(plain)
