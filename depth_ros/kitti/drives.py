"""KITTI raw drives on disk: one synced + rectified drive directory (``KittiDrive``: images,
ground truth, timestamps, camera model), the full raw drive (``RawDrive``: plus velodyne scans,
OXTS packets and the calibration chain), and finding drives below a root.

Files of a synced drive (KITTI raw data, ``<date>_drive_<NNNN>_sync``; calibration files in
the drive directory or, as KITTI ships them, its parent ``<date>``)::

    <drive>/image_0X/data/*.png, image_0X/timestamps.txt
    <drive>/velodyne_points/data/*.bin, timestamps{,_start,_end}.txt
    <drive>/oxts/data/*.txt (one 30-field packet per file), oxts/timestamps.txt
    <drive>/proj_depth/{groundtruth,velodyne_raw}/image_0X/*.png
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from depth_ros.geometry import PinholeCamera
from depth_ros.kitti.calibration import KittiRawCalibration
from depth_ros.kitti.formats import (
    KittiFormatError,
    read_calib_file,
    read_depth_png,
    read_rgb_png,
    read_timestamps,
    read_velodyne_bin,
)
from depth_ros.kitti.oxts import read_oxts_dir


class KittiDrive:
    """One synced + rectified KITTI raw drive directory (``<date>_drive_<NNNN>_sync``).

    Calibration files are looked up in the drive directory, then its parent (KITTI's place).
    """

    def __init__(self, path: str | os.PathLike, camera: int = 2) -> None:
        self.path = Path(path)
        self.camera = camera
        self.image_dir = self.path / f"image_{camera:02d}" / "data"
        if not self.image_dir.is_dir():
            raise KittiFormatError(f"not a KITTI drive: {self.image_dir} does not exist")
        self.frames = sorted(p.stem for p in self.image_dir.glob("*.png"))
        if not self.frames:
            raise KittiFormatError(f"no PNG images in {self.image_dir}")
        self.groundtruth_dir = self.path / "proj_depth" / "groundtruth" / f"image_{camera:02d}"

    def __len__(self) -> int:
        return len(self.frames)

    def calib_path(self, name: str = "calib_cam_to_cam.txt") -> Path:
        """Path of a calibration file of this drive."""
        for candidate in (self.path / name, self.path.parent / name):
            if candidate.is_file():
                return candidate
        raise KittiFormatError(f"{name} not found in {self.path} or its parent")

    def camera_model(self) -> PinholeCamera:
        """Rectified intrinsics of this drive's camera, from ``P_rect_0X`` and ``S_rect_0X``."""
        calib = read_calib_file(self.calib_path())
        key = f"P_rect_{self.camera:02d}"
        if key not in calib:
            raise KittiFormatError(f"{key} missing from {self.calib_path()}")
        size = calib.get(f"S_rect_{self.camera:02d}")
        if isinstance(size, np.ndarray) and size.size == 2:
            width, height = int(size[0]), int(size[1])
        else:
            height, width = self.rgb(0).shape[:2]
        return PinholeCamera.from_K(np.asarray(calib[key]).reshape(3, 4), width, height)

    def timestamps(self) -> np.ndarray:
        """Frame times in POSIX seconds, one per image."""
        stamps = read_timestamps(self.image_dir.parent / "timestamps.txt")
        if len(stamps) != len(self.frames):
            raise KittiFormatError(f"{self.image_dir.parent / 'timestamps.txt'} has "
                                   f"{len(stamps)} lines for {len(self.frames)} images")
        return stamps

    def image_path(self, index: int) -> Path:
        """Path of the index-th image."""
        return self.image_dir / f"{self.frames[index]}.png"

    def rgb(self, index: int) -> np.ndarray:
        """The index-th image as H×W×3 uint8 RGB."""
        return read_rgb_png(self.image_path(index))

    def groundtruth_path(self, index: int) -> Path:
        """Path of the index-th ground-truth depth PNG (it may not exist)."""
        return self.groundtruth_dir / f"{self.frames[index]}.png"

    def groundtruth(self, index: int) -> np.ndarray:
        """The index-th ground-truth depth, float32 metres, 0 where there is no data."""
        return read_depth_png(self.groundtruth_path(index))


def find_drives(root: str | os.PathLike, camera: int = 2) -> list[KittiDrive]:
    """All drives below root (directories holding ``image_0X/data``), sorted by path.

    Hidden directories below root (names starting with '.') are skipped: writers keep drives
    that are still being written there.
    """
    root = Path(root)
    dirs = sorted({p.parent.parent for p in root.rglob(f"image_{camera:02d}/data")
                   if not any(part.startswith(".") for part in p.relative_to(root).parts)})
    if not dirs:
        raise KittiFormatError(f"no KITTI drives (image_{camera:02d}/data) found under {root}")
    return [KittiDrive(d, camera) for d in dirs]


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
