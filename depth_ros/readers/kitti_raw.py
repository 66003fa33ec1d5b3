"""Real KITTI raw drives: calibration chain, velodyne scans, oxts packets, timestamps.

Files of a synced drive (KITTI raw data, ``<date>_drive_<NNNN>_sync``)::

    <date>/calib_cam_to_cam.txt     P_rect_0X (3×4), R_rect_00 (3×3), S_rect_0X
    <date>/calib_velo_to_cam.txt    R (3×3), T (3): velodyne → camera 00 (unrectified)
    <date>/calib_imu_to_velo.txt    R (3×3), T (3): IMU/GPS → velodyne
    <drive>/image_0X/data/*.png, image_0X/timestamps.txt
    <drive>/velodyne_points/data/*.bin, timestamps{,_start,_end}.txt
    <drive>/oxts/data/*.txt (one 30-field packet per file), oxts/timestamps.txt
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_ros.geometry import project_velodyne
from depth_ros.kitti import (
    KittiDrive,
    KittiFormatError,
    read_calib_file,
    read_depth_png,
    read_timestamps,
    read_velodyne_bin,
)
from depth_ros.readers.frame import DepthFrame

# The OXTS RT3003 packet as the KITTI raw devkit's dataformat.txt lists it.
OXTS_FIELDS = (
    "lat", "lon", "alt", "roll", "pitch", "yaw", "vn", "ve", "vf", "vl", "vu",
    "ax", "ay", "az", "af", "al", "au", "wx", "wy", "wz", "wf", "wl", "wu",
    "pos_accuracy", "vel_accuracy", "navstat", "numsats", "posmode", "velmode", "orimode",
)
_OXTS_INT_FIELDS = frozenset(("navstat", "numsats", "posmode", "velmode", "orimode"))
OXTS_DTYPE = np.dtype([(name, np.int32 if name in _OXTS_INT_FIELDS else np.float64)
                       for name in OXTS_FIELDS])


def _calib_array(calib: dict, key: str, size: int, path: Path) -> np.ndarray:
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
    transform[:3, :3] = _calib_array(calib, "R", 9, path).reshape(3, 3)
    transform[:3, 3] = _calib_array(calib, "T", 3, path)
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
        p_rect = _calib_array(cam, f"P_rect_{camera:02d}", 12, cam_path).reshape(3, 4)
        r_rect = np.eye(4)
        r_rect[:3, :3] = _calib_array(cam, "R_rect_00", 9, cam_path).reshape(3, 3)
        width, height = _calib_array(cam, f"S_rect_{camera:02d}", 2, cam_path)
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


def read_oxts(path: str | os.PathLike) -> np.ndarray:
    """Read an oxts packet file (30 numbers per line) as a structured ``OXTS_DTYPE`` array."""
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(f"oxts file not found: {path}")
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(OXTS_FIELDS):
            raise KittiFormatError(f"{path}:{lineno}: expected {len(OXTS_FIELDS)} oxts fields, "
                                   f"got {len(fields)}")
        try:
            values = [float(f) for f in fields]
        except ValueError as exc:
            raise KittiFormatError(f"{path}:{lineno}: {exc}") from None
        rows.append(tuple(int(v) if name in _OXTS_INT_FIELDS else v
                          for name, v in zip(OXTS_FIELDS, values, strict=True)))
    if not rows:
        raise KittiFormatError(f"{path}: empty oxts file")
    return np.array(rows, dtype=OXTS_DTYPE)


def read_oxts_dir(directory: str | os.PathLike) -> np.ndarray:
    """Every packet of ``oxts/data/*.txt`` in frame order, one structured record per file."""
    directory = Path(directory)
    files = sorted(directory.glob("*.txt"))
    if not files:
        raise KittiFormatError(f"no oxts packets in {directory}")
    return np.concatenate([read_oxts(f)[:1] for f in files])


class RawDrive(KittiDrive):
    """A real KITTI raw drive: ``KittiDrive`` plus velodyne, oxts and the calibration chain."""

    def __init__(self, path: str | os.PathLike, camera: int = 2) -> None:
        super().__init__(path, camera)
        self.velodyne_dir = self.path / "velodyne_points" / "data"
        self.oxts_dir = self.path / "oxts" / "data"
        self._calibration: KittiRawCalibration | None = None

    def has_velodyne(self) -> bool:
        """Whether the drive has velodyne scans and the velodyne calibration."""
        try:
            self.calib_path("calib_velo_to_cam.txt")
        except KittiFormatError:
            return False
        return self.velodyne_dir.is_dir()

    def calibration(self) -> KittiRawCalibration:
        """The drive's calibration chain for its camera (read once)."""
        if self._calibration is None:
            try:
                imu = self.calib_path("calib_imu_to_velo.txt")
            except KittiFormatError:
                imu = None  # only the oxts pose needs it
            self._calibration = KittiRawCalibration.from_files(
                self.calib_path("calib_cam_to_cam.txt"), self.calib_path("calib_velo_to_cam.txt"),
                imu, self.camera)
        return self._calibration

    def velodyne_raw_path(self, index: int) -> Path:
        """The index-th ``proj_depth/velodyne_raw`` PNG (the data engine and the KITTI depth
        benchmark write one; it may not exist)."""
        return (self.path / "proj_depth" / "velodyne_raw" / f"image_{self.camera:02d}"
                / f"{self.frames[index]}.png")

    def velodyne_path(self, index: int) -> Path:
        """Path of the index-th scan."""
        return self.velodyne_dir / f"{self.frames[index]}.bin"

    def velodyne(self, index: int) -> np.ndarray:
        """The index-th scan, N×4 float32 (x, y, z, reflectance) in the velodyne frame."""
        return read_velodyne_bin(self.velodyne_path(index))

    def sparse_depth(self, index: int) -> np.ndarray:
        """The index-th scan projected into the image: H×W float32 metres, 0 = no return."""
        return self.calibration().sparse_depth(self.velodyne(index))

    def oxts(self) -> np.ndarray:
        """All oxts packets of the drive (``OXTS_DTYPE``), one per frame."""
        return read_oxts_dir(self.oxts_dir)

    def sensor_timestamps(self, sensor: str, file_name: str = "timestamps.txt") -> np.ndarray:
        """POSIX seconds of a sensor folder (``velodyne_points``, ``oxts``, ``image_0X``),
        checked against the number of images; ``velodyne_points`` also has
        ``timestamps_start.txt`` and ``timestamps_end.txt`` (the start and end of each sweep)."""
        path = self.path / sensor / file_name
        stamps = read_timestamps(path)
        if len(stamps) != len(self.frames):
            raise KittiFormatError(f"{path} has {len(stamps)} lines for {len(self.frames)} "
                                   f"images in {self.image_dir}")
        return stamps

    def check(self) -> None:
        """Raise if the drive's sensors disagree on their frames (a partial copy or download)."""
        image_frames = self.frames
        for name, directory, suffix in (("velodyne", self.velodyne_dir, ".bin"),
                                        ("oxts", self.oxts_dir, ".txt")):
            if not directory.is_dir():
                continue
            frames = sorted(p.stem for p in directory.glob(f"*{suffix}"))
            if frames != image_frames:
                missing = sorted(set(image_frames) - set(frames))[:3]
                extra = sorted(set(frames) - set(image_frames))[:3]
                raise KittiFormatError(
                    f"drive {self.path}: {len(frames)} {name} frames in {directory} for "
                    f"{len(image_frames)} images in {self.image_dir} (missing {missing}, "
                    f"extra {extra})")


class KittiRawFrames:
    """Frames with ground truth from KITTI-layout drives (real or the data engine's).

    ``sparse_depth`` is the drive's ``proj_depth/velodyne_raw`` PNG where there is one, else
    the velodyne scan projected when the drive has scans and ``calib_velo_to_cam.txt``, else
    None (the engine's older drives have no LiDAR).
    """

    def __init__(self, drives: Sequence[KittiDrive], require_groundtruth: bool = True) -> None:
        self.drives = [d if isinstance(d, RawDrive) else RawDrive(d.path, d.camera)
                       for d in drives]
        for drive in self.drives:
            drive.check()
        self.index = [(drive, i) for drive in self.drives for i in range(len(drive))
                      if not require_groundtruth or drive.groundtruth_path(i).is_file()]
        if not self.index:
            raise KittiFormatError("no frames with ground-truth depth in "
                                   + ", ".join(str(d.path) for d in self.drives))
        self._velodyne = {drive.path: drive.has_velodyne() for drive in self.drives}
        self._K = {drive.path: drive.camera_model().K for drive in self.drives}

    def __len__(self) -> int:
        return len(self.index)

    def frame(self, index: int) -> DepthFrame:
        """The index-th frame."""
        drive, i = self.index[index]
        rgb = drive.rgb(i)
        gt_path = drive.groundtruth_path(i)
        depth = read_depth_png(gt_path) if gt_path.is_file() else None
        sparse = None
        raw_path = drive.velodyne_raw_path(i)
        if raw_path.is_file():
            sparse = read_depth_png(raw_path)
        elif self._velodyne[drive.path]:
            sparse = drive.sparse_depth(i)
        if sparse is not None:
            if sparse.shape != rgb.shape[:2]:
                raise KittiFormatError(f"drive {drive.path}: sparse depth of frame "
                                       f"{drive.frames[i]} is {sparse.shape[::-1]}, image "
                                       f"{drive.image_path(i)} is {rgb.shape[1::-1]}")
        return DepthFrame(rgb, self._K[drive.path].copy(), depth, sparse,
                          str(drive.image_path(i)))
